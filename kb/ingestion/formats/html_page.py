"""HTML: the text of the main content in blocks, headings h1–h6 kept, tables as rows.

Scripts, styles and other non-text elements go everywhere; navigation, sidebars and page
headers and footers go as boilerplate. A `<main>` element, when there is one, is the content.
"""

import re

import lxml.html
from lxml import etree
from lxml.html import HtmlElement

from kb.ingestion.document import DocumentBuilder
from kb.ingestion.errors import CorruptDocument

_NEVER_TEXT = ("script", "style", "noscript", "template", "svg", "math", "iframe", "object", "canvas")
_BOILERPLATE = ("nav", "aside", "header", "footer")
_HEADING_LEVELS = {f"h{level}": level for level in range(1, 7)}
_BLOCKS = frozenset(
    "address article aside blockquote body caption center dd details dialog div dl dt fieldset "
    "figcaption figure footer form header hr li main nav ol p pre section summary table ul".split()
)
_TABLE_ROWS = "./tr|./thead/tr|./tbody/tr|./tfoot/tr"
_CELLS = ("td", "th")
# lxml refuses str input that declares a byte encoding; the text is already decoded.
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*>")
_WHITESPACE = re.compile(r"\s+")


def extract_html(text: str, builder: DocumentBuilder) -> str:
    root = _parse(text)
    if root is None:
        return ""
    title = root.findtext(".//title") or ""
    etree.strip_elements(root, etree.Comment, etree.ProcessingInstruction, *_NEVER_TEXT, with_tail=False)
    content = root.find(".//main")
    if content is None:
        content = root.find("body")
    if content is None:
        content = root
    _drop_boilerplate(content)
    _BlockWriter(builder).write(content)
    return title


def _parse(text: str) -> HtmlElement | None:
    """The document's root element, or None when it has no elements at all."""
    parser = lxml.html.HTMLParser()
    try:
        root = lxml.html.document_fromstring(_XML_DECLARATION.sub("", text), parser=parser)
    except etree.ParserError:
        return None
    # libxml2 stops descending at 256 levels and silently drops what lies deeper.
    if any(error.type_name == "ERR_RESOURCE_LIMIT" for error in parser.error_log):
        raise CorruptDocument("The HTML is nested more deeply than any real page (over 256 levels).")
    return root


def _drop_boilerplate(content: HtmlElement) -> None:
    for element in list(content.iter(*_BOILERPLATE)):
        # An article's own header holds its title and byline, not site navigation.
        in_article = next(element.iterancestors("article"), None) is not None
        if element.tag in ("nav", "aside") or not in_article:
            element.drop_tree()


class _BlockWriter:
    """Writes an element tree to a builder: every block element ends the running paragraph."""

    def __init__(self, builder: DocumentBuilder) -> None:
        self._builder = builder
        self._pieces: list[str] = []
        self._preformatted_depth = 0

    def write(self, root: HtmlElement) -> None:
        # iterwalk rather than recursion: nesting depth is up to the page's author.
        walker = etree.iterwalk(root, events=("start", "end"))
        for event, element in walker:
            if event == "end":
                self._end(element)
            elif element.tag in _HEADING_LEVELS:
                self._flush()
                self._builder.add_heading(element.text_content(), level=_HEADING_LEVELS[element.tag])
                walker.skip_subtree()
            elif element.tag == "table":
                self._flush()
                self._builder.add_lines(_row_text(row) for row in element.xpath(_TABLE_ROWS))
                walker.skip_subtree()
            else:
                self._start(element)
        self._flush()

    def _start(self, element: HtmlElement) -> None:
        if element.tag in _BLOCKS:
            self._flush()
        if element.tag == "pre":
            self._preformatted_depth += 1
        elif element.tag == "br":
            self._pieces.append("\n")
        self._add_text(element.text)

    def _end(self, element: HtmlElement) -> None:
        if element.tag in _BLOCKS:
            self._flush()
        if element.tag == "pre":
            self._preformatted_depth -= 1
        self._add_text(element.tail)

    def _add_text(self, text: str | None) -> None:
        if text:
            self._pieces.append(text if self._preformatted_depth else _WHITESPACE.sub(" ", text))

    def _flush(self) -> None:
        text = "".join(self._pieces)
        self._pieces.clear()
        if not self._preformatted_depth:
            text = "\n".join(line.strip() for line in text.split("\n"))
        self._builder.add_block(text)


def _row_text(row: HtmlElement) -> str:
    return " | ".join(" ".join(cell.text_content().split()) for cell in row if cell.tag in _CELLS)
