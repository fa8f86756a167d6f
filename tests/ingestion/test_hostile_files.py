"""Files whose content is not what they claim, or is built to hurt the worker."""

import contextlib
import os
import random
import re

import pytest

from kb.ingestion import (
    CorruptDocument,
    DocumentTooLarge,
    EncryptedDocument,
    ParseError,
    UnsupportedFormat,
    parse_document,
)
from tests.ingestion.factories import (
    docx_bytes,
    pdf_bytes,
    pptx_bytes,
    with_part_replaced,
    xlsx_bytes,
    zip_bytes,
)

OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def test_random_bytes_named_docx_are_unsupported():
    with pytest.raises(UnsupportedFormat, match="not recognised"):
        parse_document(random.Random(4).randbytes(20_000), filename="contract.docx")


def test_content_decides_the_type_when_the_name_lies():
    document = parse_document(xlsx_bytes({"Sheet": [["value"]]}), filename="report.pdf")

    assert document.mime == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.mark.parametrize(
    "make",
    [
        lambda: pdf_bytes([["Some text"]] * 3),
        lambda: docx_bytes(lambda document: document.add_paragraph("Some text")),
        lambda: pptx_bytes([("Title", ["Some text"])]),
        lambda: xlsx_bytes({"Sheet": [["Some", "text"]] * 100}),
    ],
    ids=["pdf", "docx", "pptx", "xlsx"],
)
@pytest.mark.parametrize("kept", [0.25, 0.5, 0.75, 0.95])
def test_truncated_documents_are_parse_errors(make, kept):
    data = make()

    with pytest.raises(ParseError):
        parse_document(data[: int(len(data) * kept)])


def test_zip_bomb_inside_docx_is_refused_before_unpacking():
    bomb = zip_bytes({"word/document.xml": b"<w:document/>", "word/media/image1.png": bytes(32 * 2**20)})

    with pytest.raises(CorruptDocument, match="zip bomb"):
        parse_document(bomb)


def test_office_file_unpacking_past_the_limit_is_too_large():
    data = docx_bytes(lambda document: document.add_paragraph("Hello"))

    with pytest.raises(DocumentTooLarge, match="unpack"):
        parse_document(data, max_unpacked_bytes=10_000)


def test_zip_with_too_many_parts_is_refused():
    with pytest.raises(CorruptDocument, match="parts"):
        parse_document(zip_bytes({f"xl/part{index}.xml": b"" for index in range(10_001)}))


def test_zip_that_is_not_an_office_document_is_unsupported():
    with pytest.raises(UnsupportedFormat, match="ZIP archive"):
        parse_document(zip_bytes({"mimetype": b"application/vnd.oasis.opendocument.text"}))


def test_password_protected_office_file_is_encrypted():
    container = OLE_SIGNATURE + bytes(512) + "EncryptedPackage".encode("utf-16-le") + bytes(512)

    with pytest.raises(EncryptedDocument, match="password-protected"):
        parse_document(container, filename="salaries.xlsx")


def test_legacy_office_file_is_unsupported_with_advice():
    with pytest.raises(UnsupportedFormat, match=r"\.docx"):
        parse_document(OLE_SIGNATURE + bytes(1024), filename="old.doc")


def test_image_is_unsupported_and_says_ocr_is_not_supported():
    with pytest.raises(UnsupportedFormat, match="OCR"):
        parse_document(b"\x89PNG\r\n\x1a\n" + os.urandom(64), filename="scan.pdf")


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_never_escape_as_anything_but_a_parse_error(seed):
    with contextlib.suppress(ParseError):
        parse_document(random.Random(seed).randbytes(4096))


def test_docx_table_cell_spanning_billions_of_columns_is_read_once():
    def build(document):
        table = document.add_table(rows=1, cols=2)
        table.cell(0, 0).text = "wide"
        table.cell(0, 1).text = "cell"
        table.cell(0, 0)._tc.grid_span = 2_000_000_000

    assert parse_document(docx_bytes(build)).text == "wide | cell"


def test_xlsx_claiming_a_million_rows_by_16384_columns_reads_only_its_cells():
    data = with_part_replaced(
        xlsx_bytes({"Sheet": [["only", "cells"]]}),
        "xl/worksheets/sheet1.xml",
        lambda xml: re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:XFD1048576"', xml),
    )

    assert parse_document(data).text == "Sheet\n\nonly | cells"


def test_billion_laughs_entity_expansion_in_docx_is_refused():
    entities = b'<!ENTITY lol0 "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (level, b"&lol%d;" % (level - 1) * 10) for level in range(1, 10)
    )

    def explode(xml):
        body = xml.split(b"?>", 1)[1].replace(b"PLACEHOLDER", b"&lol9;")
        return b'<?xml version="1.0"?>\n<!DOCTYPE w:document [%s]>%s' % (entities, body)

    data = with_part_replaced(
        docx_bytes(lambda d: d.add_paragraph("PLACEHOLDER")), "word/document.xml", explode
    )

    with pytest.raises(CorruptDocument, match="amplification"):
        parse_document(data)
