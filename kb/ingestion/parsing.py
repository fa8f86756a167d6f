"""Turning the bytes of an uploaded file into normalised text with its structure.

`parse_document` is the one entry point. It decides the format from the content, extracts the
text with the format's parser and reports every failure as a `ParseError` for the curator.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import PureWindowsPath

from kb.ingestion.detection import DocumentFormat, detect_binary_format, detect_text_format
from kb.ingestion.document import DocumentBuilder, ParsedDocument
from kb.ingestion.encoding import decode_text
from kb.ingestion.errors import CorruptDocument, EmptyDocument, ParseError
from kb.ingestion.formats.excel import extract_excel
from kb.ingestion.formats.html_page import extract_html
from kb.ingestion.formats.markdown import extract_markdown
from kb.ingestion.formats.pdf import extract_pdf
from kb.ingestion.formats.plain_text import extract_plain_text
from kb.ingestion.formats.powerpoint import extract_powerpoint
from kb.ingestion.formats.word import extract_word

# About 2.5 million tokens, or some 5,000 pages of prose: far beyond any single document a
# curator means to upload, small enough to keep a worker's memory and time bounded.
DEFAULT_MAX_CHARS = 10_000_000
# A 100 MB upload of compressed XML can honestly unpack to a few hundred MiB; DOCX and PPTX
# parsers hold the whole XML tree in memory, several times larger than the XML itself.
DEFAULT_MAX_UNPACKED_BYTES = 512 * 2**20

_BINARY_EXTRACTORS: dict[DocumentFormat, Callable[[bytes, DocumentBuilder], str]] = {
    DocumentFormat.PDF: extract_pdf,
    DocumentFormat.DOCX: extract_word,
    DocumentFormat.PPTX: extract_powerpoint,
    DocumentFormat.XLSX: extract_excel,
}
_TEXT_EXTRACTORS: dict[DocumentFormat, Callable[[str, DocumentBuilder], str]] = {
    DocumentFormat.HTML: extract_html,
    DocumentFormat.MARKDOWN: extract_markdown,
    DocumentFormat.PLAIN_TEXT: extract_plain_text,
}
_FORMAT_NAMES = {
    DocumentFormat.PDF: "a PDF",
    DocumentFormat.DOCX: "a Word document",
    DocumentFormat.PPTX: "a PowerPoint presentation",
    DocumentFormat.XLSX: "an Excel workbook",
    DocumentFormat.HTML: "an HTML page",
    DocumentFormat.MARKDOWN: "a Markdown file",
    DocumentFormat.PLAIN_TEXT: "a text file",
}
# Titles that PDF and Office tools write when the author gave none (reportlab, for one, writes
# "untitled"); the first heading or the file name says more.
_PLACEHOLDER_TITLES = {"untitled", "untitled document"}
_NO_TEXT_REASONS = {
    DocumentFormat.PDF: "The PDF has no text layer (probably a scan); OCR is not supported.",
}


def parse_document(
    data: bytes,
    *,
    filename: str = "",
    max_chars: int = DEFAULT_MAX_CHARS,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
) -> ParsedDocument:
    """Parses an uploaded file of any supported format.

    The format comes from the content; `filename` only tells Markdown, HTML and plain text
    apart and is the title of last resort. Raises a `ParseError` subclass with a message for
    the curator when the file is unsupported, damaged, encrypted, empty, or larger than
    `max_chars` characters of text or (Office files) `max_unpacked_bytes` once unzipped.
    """
    if not data:
        raise EmptyDocument("The file is empty (0 bytes).")
    builder = DocumentBuilder(max_chars=max_chars)
    document_format = detect_binary_format(data, max_unpacked_bytes=max_unpacked_bytes)
    if document_format is None:
        text = decode_text(data)
        document_format = detect_text_format(text, filename=filename)
        with _damage_reported(document_format):
            metadata_title = _TEXT_EXTRACTORS[document_format](text, builder)
    else:
        with _damage_reported(document_format):
            metadata_title = _BINARY_EXTRACTORS[document_format](data, builder)
    if builder.is_empty:
        default_reason = f"The file is {_FORMAT_NAMES[document_format]} without any text."
        raise EmptyDocument(_NO_TEXT_REASONS.get(document_format, default_reason))
    title = _title(metadata_title, first_heading=builder.first_heading, filename=filename)
    return builder.build(mime=document_format.value, title=title)


def _title(metadata_title: str, *, first_heading: str, filename: str) -> str:
    """The title stored in the file unless it is a placeholder, else the first heading, else
    the file name without its folders and suffix."""
    stored = metadata_title.strip()
    if stored.lower() in _PLACEHOLDER_TITLES:
        stored = ""
    return stored or first_heading or PureWindowsPath(filename).stem


@contextmanager
def _damage_reported(document_format: DocumentFormat) -> Iterator[None]:
    """Turns any error of a third-party parser into a `CorruptDocument` naming the format."""
    try:
        yield
    except ParseError:
        raise
    # Parsers fail on damaged files with any exception type (and RecursionError or MemoryError
    # on hostile ones); whatever they raise, the file is what is wrong.
    except Exception as error:
        raise CorruptDocument(
            f"The file looks like {_FORMAT_NAMES[document_format]} but could not be read; "
            f"it is probably damaged ({type(error).__name__}: {error})."
        ) from error
