import codecs

import pytest

from kb.ingestion import CorruptDocument, DocumentTooLarge, EmptyDocument, UnsupportedFormat, parse_document
from tests.ingestion.invariants import assert_well_formed

CHINESE = "知识库系统：上传文档后自动解析。“引号”与《书名》……第二行包含数字123和English words."


@pytest.mark.parametrize(
    "data",
    [
        CHINESE.encode("utf-8"),
        codecs.BOM_UTF8 + CHINESE.encode("utf-8"),
        codecs.BOM_UTF16_LE + CHINESE.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + CHINESE.encode("utf-16-be"),
        CHINESE.encode("gb18030"),
        CHINESE.encode("gbk"),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16-le-bom", "utf-16-be-bom", "gb18030", "gbk"],
)
def test_chinese_text_is_decoded_whatever_the_encoding(data):
    assert parse_document(data, filename="说明.txt").text == CHINESE


@pytest.mark.parametrize("text", ["中文", "你好，世界", "𠀀字与€符号"])
def test_short_gb18030_text_is_not_mistaken_for_another_encoding(text):
    assert parse_document(text.encode("gb18030")).text == text


def test_western_legacy_encoding_falls_back_to_a_guess():
    text = "Le comité a approuvé le budget. Prochaine réunion : février, à Genève.\n" * 5

    assert parse_document(text.encode("cp1252")).text.startswith("Le comit")


def test_text_is_normalised_nfc_newlines_controls_and_blank_runs():
    # Long enough for two stray control characters not to make the file look binary.
    prose = "A paragraph of ordinary prose. " * 10
    data = f"Cafe\u0301\r\nline\x00two\rthree\n\n\n\n\x07four  \n\ufefffive\n{prose}".encode()

    document = parse_document(data)

    assert document.text == f"Café\nlinetwo\nthree\n\nfour\nfive\n{prose.rstrip()}"
    assert document.mime == "text/plain"
    assert_well_formed(document)


def test_title_of_plain_text_is_the_file_name():
    assert parse_document(b"Body", filename=r"C:\Users\ann\minutes 2024-05.txt").title == "minutes 2024-05"


def test_text_over_the_character_limit_is_too_large():
    with pytest.raises(DocumentTooLarge, match="more than 1,000 characters"):
        parse_document(b"x" * 1001, max_chars=1_000)


def test_empty_and_blank_files_are_empty():
    with pytest.raises(EmptyDocument, match="0 bytes"):
        parse_document(b"")
    with pytest.raises(EmptyDocument):
        parse_document(b" \n\t\r\n ")


def test_utf16_without_byte_order_mark_is_not_guessed():
    with pytest.raises(UnsupportedFormat):
        parse_document("plain words".encode("utf-16-le"))


def test_text_contradicting_its_byte_order_mark_is_corrupt():
    with pytest.raises(CorruptDocument, match="UTF-8 byte-order mark"):
        parse_document(codecs.BOM_UTF8 + b"caf\xe9")
