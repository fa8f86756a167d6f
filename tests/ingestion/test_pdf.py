import pytest

from kb.ingestion import CorruptDocument, DocumentTooLarge, EmptyDocument, EncryptedDocument, parse_document
from kb.ingestion.formats import pdf
from tests.ingestion.factories import encrypted_pdf_bytes, pdf_bytes, shared_page_pdf_bytes
from tests.ingestion.invariants import assert_well_formed


def test_each_page_span_holds_exactly_that_pages_text():
    document = parse_document(
        pdf_bytes([["First page", "continues here"], ["Second page"], ["第三页的中文内容"]])
    )

    assert document.mime == "application/pdf"
    assert [page.page_number for page in document.pages] == [1, 2, 3]
    texts = [document.text[page.char_start : page.char_end] for page in document.pages]
    assert texts == ["First page\ncontinues here", "Second page", "第三页的中文内容"]
    assert_well_formed(document)


def test_page_without_text_has_no_span_but_numbering_of_later_pages_is_kept():
    document = parse_document(pdf_bytes([["Before the figure"], [], ["After the figure"]]))

    assert [page.page_number for page in document.pages] == [1, 3]
    assert document.text[document.pages[1].char_start : document.pages[1].char_end] == "After the figure"


def test_title_comes_from_metadata_then_file_name():
    assert (
        parse_document(pdf_bytes([["Body"]], title="Annual Report"), filename="x.pdf").title
        == "Annual Report"
    )
    assert parse_document(pdf_bytes([["Body"]]), filename="scans/report-2024.pdf").title == "report-2024"


def test_scanned_pdf_without_text_layer_says_ocr_is_not_supported():
    with pytest.raises(EmptyDocument, match="OCR is not supported"):
        parse_document(pdf_bytes([[], []]))


def test_password_protected_pdf_is_reported_as_encrypted():
    with pytest.raises(EncryptedDocument, match="password-protected"):
        parse_document(encrypted_pdf_bytes(user_password="secret"))


def test_pdf_encrypted_only_against_editing_is_read():
    assert parse_document(encrypted_pdf_bytes(user_password="")).text == "Confidential figures"


def test_truncated_pdf_is_corrupt():
    data = pdf_bytes([["Some text"]] * 3)

    with pytest.raises(CorruptDocument, match="incomplete"):
        parse_document(data[: len(data) // 2])


def test_pdf_header_followed_by_garbage_is_corrupt():
    with pytest.raises(CorruptDocument, match="looks like a PDF"):
        parse_document(b"%PDF-1.7\n" + bytes(range(256)) * 20 + b"\n%%EOF\n")


def test_thousands_of_pages_stop_at_the_character_limit():
    with pytest.raises(DocumentTooLarge, match="more than 20,000 characters"):
        parse_document(shared_page_pdf_bytes(2000, "The same sentence on every page."), max_chars=20_000)


def test_pdf_with_more_pages_than_the_limit_is_refused_before_extraction(monkeypatch):
    monkeypatch.setattr(pdf, "MAX_PAGES", 50)

    with pytest.raises(DocumentTooLarge, match="51 pages"):
        parse_document(shared_page_pdf_bytes(51, "x"))
