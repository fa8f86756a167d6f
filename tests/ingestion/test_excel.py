import datetime

import pytest

from kb.ingestion import DocumentTooLarge, EmptyDocument, parse_document
from tests.ingestion.factories import xlsx_bytes
from tests.ingestion.invariants import assert_well_formed

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_each_sheet_is_headed_by_its_name_with_rows_as_lines():
    data = xlsx_bytes(
        {
            "Budget": [
                ["Item", "Cost", "Due"],
                ["Pens", 3.0, datetime.date(2024, 5, 1)],
                ["Paper", 2.5, None],
            ],
            "预算": [["项目", "金额"], ["差旅", 1200]],
        }
    )

    document = parse_document(data)

    assert document.mime == XLSX
    assert document.text == (
        "Budget\n\nItem | Cost | Due\nPens | 3 | 2024-05-01\nPaper | 2.5\n\n预算\n\n项目 | 金额\n差旅 | 1200"
    )
    assert [(h.level, h.heading_text) for h in document.headings] == [(1, "Budget"), (1, "预算")]
    assert document.pages == []
    assert_well_formed(document)


def test_empty_rows_are_skipped_and_inner_empty_cells_kept():
    data = xlsx_bytes({"Sheet": [["a", None, "c"], [], [None, None], ["d"]]})

    assert parse_document(data).text == "Sheet\n\na | | c\nd"


def test_empty_sheets_are_left_out_and_a_blank_workbook_is_empty():
    assert parse_document(xlsx_bytes({"Blank": [], "Data": [["x"]]})).text == "Data\n\nx"
    with pytest.raises(EmptyDocument, match="Excel workbook without any text"):
        parse_document(xlsx_bytes({"Sheet1": [[None, None]]}))


def test_huge_sheet_stops_at_the_character_limit():
    data = xlsx_bytes({"Log": [[f"row {index}", "some value", index] for index in range(5000)]})

    with pytest.raises(DocumentTooLarge):
        parse_document(data, max_chars=10_000)


def test_millions_of_empty_rows_cannot_keep_the_worker_busy():
    data = xlsx_bytes({"Sparse": [["start"]] + [[]] * 3000 + [["end"]]})

    with pytest.raises(DocumentTooLarge, match="cells"):
        parse_document(data, max_chars=2_000)
