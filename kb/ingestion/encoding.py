"""Decoding text files whose encoding nobody told us: UTF-8/16/32, GB18030 (GBK) and the rest."""

import codecs
import re

from charset_normalizer import from_bytes

from kb.ingestion.errors import CorruptDocument, UnsupportedFormat

# UTF-32 LE must be tried before UTF-16 LE: its byte-order mark starts with UTF-16 LE's.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
# The checks below look at the start of the text only: enough to judge, and fast on huge files.
_SAMPLE_CHARS = 65_536
# Characters that GB18030-encoded Chinese decodes to: ideographs (with the rare ones of the
# supplementary planes), CJK and full-width punctuation, and the general punctuation (quotes,
# dashes, ellipsis), currency and other symbols that GB18030 also encodes.
_CHINESE_TEXT = re.compile(
    r"[\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0003134f\u3000-\u303f\uff00-\uffef"
    r"\u2000-\u206f\u20a0-\u20cf\u00b7\u00d7]"
)
# Western text in a legacy 8-bit encoding sometimes happens to be valid GB18030; its accented
# letters then decode to scattered ideographs mixed with other symbols, while real Chinese text
# decodes almost entirely to the characters above.
_MIN_CHINESE_SHARE = 0.9
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# Text has tabs and newlines but hardly any other control characters; binary data has plenty.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_MAX_CONTROL_SHARE = 0.01
_NOT_TEXT = (
    "The file type was not recognised: it is not a PDF, Word, PowerPoint or Excel document, "
    "and not HTML, Markdown or plain text."
)


def decode_text(data: bytes) -> str:
    """Decodes the bytes of a text file, guessing the encoding from the content.

    A byte-order mark decides; otherwise UTF-8, then GB18030 when the result reads as Chinese,
    then the best guess of charset-normalizer. Raises `UnsupportedFormat` for binary data and
    `CorruptDocument` for text contradicting its byte-order mark.
    """
    text = _decode(data)
    sample = text[:_SAMPLE_CHARS]
    if len(_CONTROL.findall(sample)) > _MAX_CONTROL_SHARE * len(sample):
        raise UnsupportedFormat(_NOT_TEXT)
    return text


def _decode(data: bytes) -> str:
    for mark, codec, name in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as error:
                raise CorruptDocument(
                    f"The text file starts with a {name} byte-order mark but is not valid {name} "
                    f"(error at byte {error.start:,}). Save it again as UTF-8."
                ) from error
    for attempt in (_decode_utf8, _decode_chinese, _decode_best_guess):
        text = attempt(data)
        if text is not None:
            return text
    raise UnsupportedFormat(_NOT_TEXT)


def _decode_utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _decode_chinese(data: bytes) -> str | None:
    """GB18030 (a superset of GBK and GB2312) if the bytes are valid and read as Chinese.

    Tried before charset-normalizer because its guesses for short Chinese texts are unreliable
    (a few GBK characters often come out as Big5 or Korean).
    """
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        return None
    sample = text[:_SAMPLE_CHARS]
    non_ascii = len(_NON_ASCII.findall(sample))
    if non_ascii and len(_CHINESE_TEXT.findall(sample)) >= _MIN_CHINESE_SHARE * non_ascii:
        return text
    return None


def _decode_best_guess(data: bytes) -> str | None:
    match = from_bytes(data).best()
    return None if match is None else str(match)
