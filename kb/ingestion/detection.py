"""Deciding what an uploaded file is from its bytes; the file name only separates text formats."""

import enum
import re
from pathlib import PureWindowsPath

from kb.ingestion.container import member_names
from kb.ingestion.errors import EncryptedDocument, UnsupportedFormat


class DocumentFormat(enum.Enum):
    """A format we parse; the value is its MIME type."""

    PDF = "application/pdf"
    DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    HTML = "text/html"
    MARKDOWN = "text/markdown"
    PLAIN_TEXT = "text/plain"


# The PDF specification lets readers accept a header anywhere in the first kilobyte.
_PDF_HEADER = b"%PDF-"
_PDF_HEADER_WINDOW = 1024
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Office stores a password-protected DOCX/XLSX/PPTX inside an OLE file, in a stream of this name.
_OLE_ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")
_OOXML_FOLDERS = (
    ("word/", DocumentFormat.DOCX),
    ("ppt/", DocumentFormat.PPTX),
    ("xl/", DocumentFormat.XLSX),
)
# Common files that would otherwise be reported only as "not recognised".
_OTHER_SIGNATURES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"{\\rtf", "an RTF document"),
)

# A comment's body may not run past "-->": otherwise a run of comments could be grouped in
# exponentially many ways, and a crafted file would hang the regular expression.
_HTML_DOCUMENT = re.compile(
    r"\A\s*(<\?xml[^>]*>\s*)?(<!--(?:(?!-->).)*-->\s*)*<(!doctype\s+html|html[\s>])", re.I | re.S
)
_HTML_SKELETON = re.compile(r"<(html|head|body)[\s>]", re.I)
_HTML_TAG = re.compile(r"<[a-z][a-z0-9]*[\s/>]", re.I)
_MARKDOWN_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.M)
_SNIFFED_CHARS = 4096
_HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
_MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
_PLAIN_TEXT_SUFFIXES = {".txt", ".text"}


def detect_binary_format(data: bytes, *, max_unpacked_bytes: int) -> DocumentFormat | None:
    """Returns the format of a binary document (PDF, DOCX, PPTX, XLSX), or None for other content.

    Looks at magic bytes and, for ZIP files, at the folders inside (after checking the ZIP is safe
    to unpack, see `container.member_names`). Raises `UnsupportedFormat` for binary formats we
    recognise but do not read and `EncryptedDocument` for password-protected Office files.
    """
    if _PDF_HEADER in data[:_PDF_HEADER_WINDOW]:
        return DocumentFormat.PDF
    if data.startswith(_ZIP_SIGNATURES):
        return _office_format(member_names(data, max_unpacked_bytes=max_unpacked_bytes))
    if data.startswith(_OLE_SIGNATURE):
        if _OLE_ENCRYPTED_STREAM in data:
            raise EncryptedDocument(
                "The Office document is password-protected. Remove the password and upload it again."
            )
        raise UnsupportedFormat(
            "This is a legacy Office file (.doc, .xls or .ppt), which is not supported. "
            "Save it as .docx, .xlsx or .pptx and upload it again."
        )
    for signature, description in _OTHER_SIGNATURES:
        if data.startswith(signature):
            raise UnsupportedFormat(
                f"The file is {description}, which is not supported (text is not read from images: "
                "OCR is not supported)."
            )
    return None


def detect_text_format(text: str, *, filename: str) -> DocumentFormat:
    """Returns HTML, Markdown or plain text for decoded `text`.

    A text starting as an HTML document is HTML whatever its name; otherwise the file name's
    suffix decides (an .html name only if the text has tags), and without a known suffix the
    text is sniffed for an HTML skeleton, then for Markdown headings.
    """
    head = text[:_SNIFFED_CHARS]
    if _HTML_DOCUMENT.match(head):
        return DocumentFormat.HTML
    suffix = PureWindowsPath(filename).suffix.lower()
    if suffix in _HTML_SUFFIXES and _HTML_TAG.search(head):
        return DocumentFormat.HTML
    if suffix in _MARKDOWN_SUFFIXES:
        return DocumentFormat.MARKDOWN
    if suffix in _PLAIN_TEXT_SUFFIXES:
        return DocumentFormat.PLAIN_TEXT
    if _HTML_SKELETON.search(head):
        return DocumentFormat.HTML
    return DocumentFormat.MARKDOWN if _MARKDOWN_HEADING.search(text) else DocumentFormat.PLAIN_TEXT


def _office_format(names: list[str]) -> DocumentFormat:
    for folder, document_format in _OOXML_FOLDERS:
        if any(name.startswith(folder) for name in names):
            return document_format
    raise UnsupportedFormat(
        "The file is a ZIP archive, not a Word, PowerPoint or Excel document. Archives and "
        "OpenDocument files (.odt, .ods, .odp) are not supported; upload the documents themselves "
        "or save them as .docx, .pptx or .xlsx."
    )
