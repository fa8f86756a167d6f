"""The parsed form of an uploaded file, and the builder every format parser fills in."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from kb.ingestion.errors import DocumentTooLarge
from kb.ingestion.normalisation import normalise_block, normalise_line

BLOCK_SEPARATOR = "\n\n"
LINE_SEPARATOR = "\n"


class PageSpan(NamedTuple):
    """The text of one page (PDF) or slide (PPTX) is `text[char_start:char_end]`.

    Pages without any text get no span, so spans are ordered but page numbers may skip.
    """

    page_number: int
    char_start: int
    char_end: int


class Heading(NamedTuple):
    """A heading whose text is `text[char_offset:char_offset + len(heading_text)]`.

    `level` is 1 for top-level headings and grows with depth (Markdown/HTML 1–6, Word 1–9);
    0 marks a Word paragraph in the Title style, which sits above every heading.
    """

    char_offset: int
    level: int
    heading_text: str


@dataclass(frozen=True)
class ParsedDocument:
    """Normalised text of a document with its structure; every offset indexes `text` exactly.

    `text` is NFC with `\\n` newlines, no control characters, blocks (paragraphs, headings,
    tables, slides' shapes) separated by one blank line, table rows by a single newline.
    """

    text: str
    mime: str
    title: str
    pages: list[PageSpan]
    headings: list[Heading]


class DocumentBuilder:
    """Collects normalised blocks of text in reading order, recording page spans and headings.

    Raises `DocumentTooLarge` as soon as the text grows past `max_chars`, so a parser that feeds
    it stops early instead of extracting a huge document to the end.
    """

    def __init__(self, *, max_chars: int) -> None:
        self.max_chars = max_chars
        self._parts: list[str] = []
        self._length = 0
        self._pages: list[PageSpan] = []
        self._headings: list[Heading] = []
        self._page_number: int | None = None
        self._page_start: int | None = None

    @property
    def is_empty(self) -> bool:
        return self._length == 0

    @property
    def first_heading(self) -> str:
        return self._headings[0].heading_text if self._headings else ""

    def start_page(self, number: int) -> None:
        """Closes the current page; text added from now on belongs to page `number`."""
        self._close_page()
        self._page_number = number

    def add_block(self, text: str) -> None:
        """Adds a paragraph-like block; blank or empty text is ignored."""
        block = normalise_block(text)
        if block:
            self._append(block, BLOCK_SEPARATOR)

    def add_heading(self, text: str, *, level: int) -> None:
        """Adds a heading as a block of its own, folded onto one line; blank headings are ignored."""
        heading = normalise_line(text)
        if heading:
            offset = self._append(heading, BLOCK_SEPARATOR)
            self._headings.append(Heading(offset, level, heading))

    def add_lines(self, lines: Iterable[str]) -> None:
        """Adds one block of single-line rows (a table, a sheet), skipping blank rows.

        `lines` is consumed lazily so that the size limit stops a huge table while it is read.
        """
        separator = BLOCK_SEPARATOR
        for text in lines:
            line = normalise_line(text)
            if line:
                self._append(line, separator)
                separator = LINE_SEPARATOR

    def build(self, *, mime: str, title: str) -> ParsedDocument:
        self._close_page()
        return ParsedDocument(
            text="".join(self._parts),
            mime=mime,
            title=normalise_line(title),
            pages=list(self._pages),
            headings=list(self._headings),
        )

    def _append(self, text: str, separator: str) -> int:
        """Appends `text` (already normalised) and returns its offset."""
        if self._parts:
            self._parts.append(separator)
            self._length += len(separator)
        offset = self._length
        if offset + len(text) > self.max_chars:
            raise DocumentTooLarge(
                f"The document has more than {self.max_chars:,} characters of text, the most one "
                "upload may hold. Split it into smaller files."
            )
        self._parts.append(text)
        self._length += len(text)
        if self._page_number is not None and self._page_start is None:
            self._page_start = offset
        return offset

    def _close_page(self) -> None:
        if self._page_number is not None and self._page_start is not None:
            self._pages.append(PageSpan(self._page_number, self._page_start, self._length))
        self._page_number = None
        self._page_start = None
