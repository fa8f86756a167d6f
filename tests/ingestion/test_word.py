import pytest
from docx.enum.style import WD_STYLE_TYPE

from kb.ingestion import CorruptDocument, DocumentTooLarge, parse_document
from tests.ingestion.factories import docx_bytes, with_part_replaced
from tests.ingestion.invariants import assert_well_formed

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def _report(document):
    document.add_heading("Quarterly Report", 0)
    document.add_heading("Summary", 1)
    document.add_paragraph("Revenue grew in every region.")
    document.add_heading("Details", 2)
    table = document.add_table(rows=2, cols=3)
    for cell, text in zip(table.rows[0].cells, ["Region", "Q1", "Q2"], strict=True):
        cell.text = text
    for cell, text in zip(table.rows[1].cells, ["North", "10", "12"], strict=True):
        cell.text = text
    document.add_paragraph("第二段：中文内容。")


def test_headings_take_their_levels_from_styles_with_title_above_all():
    document = parse_document(docx_bytes(_report), filename="report.docx")

    assert document.mime == DOCX
    assert [(h.level, h.heading_text) for h in document.headings] == [
        (0, "Quarterly Report"),
        (1, "Summary"),
        (2, "Details"),
    ]
    assert document.title == "Quarterly Report"
    assert document.pages == []
    assert_well_formed(document)


def test_body_and_tables_keep_reading_order_with_tables_as_rows():
    document = parse_document(docx_bytes(_report))

    assert document.text == (
        "Quarterly Report\n\nSummary\n\nRevenue grew in every region.\n\nDetails\n\n"
        "Region | Q1 | Q2\nNorth | 10 | 12\n\n第二段：中文内容。"
    )


def test_merged_cells_are_written_once():
    def build(document):
        table = document.add_table(rows=2, cols=3)
        table.cell(0, 0).merge(table.cell(0, 2)).text = "Merged header"
        for cell, text in zip(table.rows[1].cells, ["a", "b", "c"], strict=True):
            cell.text = text

    assert parse_document(docx_bytes(build)).text == "Merged header\na | b | c"


def test_vertically_merged_cell_is_written_in_its_first_row_only():
    def build(document):
        table = document.add_table(rows=2, cols=2)
        table.cell(0, 0).merge(table.cell(1, 0)).text = "Tall"
        table.cell(0, 1).text = "top"
        table.cell(1, 1).text = "bottom"

    assert parse_document(docx_bytes(build)).text == "Tall | top\n| bottom"


def test_custom_style_based_on_a_heading_is_a_heading_of_that_level():
    def build(document):
        style = document.styles.add_style("Chapter", WD_STYLE_TYPE.PARAGRAPH)
        style.base_style = document.styles["Heading 2"]
        document.add_paragraph("Custom chapter", style="Chapter")
        document.add_paragraph("Body")

    document = parse_document(docx_bytes(build))

    assert [(h.level, h.heading_text) for h in document.headings] == [(2, "Custom chapter")]


def test_title_comes_from_document_properties_first():
    def build(document):
        document.core_properties.title = "Policy 42"
        document.add_heading("Scope", 1)

    assert parse_document(docx_bytes(build)).title == "Policy 42"


def test_docx_with_broken_xml_is_corrupt():
    data = with_part_replaced(docx_bytes(_report), "word/document.xml", lambda xml: xml[:500])

    with pytest.raises(CorruptDocument, match="looks like a Word document"):
        parse_document(data)


def test_long_document_stops_at_the_character_limit():
    def build(document):
        for index in range(200):
            document.add_paragraph(f"Paragraph {index} " + "words " * 20)

    with pytest.raises(DocumentTooLarge):
        parse_document(docx_bytes(build), max_chars=5_000)
