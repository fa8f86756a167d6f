"""DOCX: paragraphs and tables of the body in reading order, headings levelled by their styles."""

import io
import re

import docx
from docx.document import Document
from docx.opc.constants import RELATIONSHIP_TYPE
from docx.oxml.ns import qn
from docx.styles.style import ParagraphStyle
from docx.table import Table, _Cell
from docx.text.paragraph import Paragraph

from kb.ingestion.document import DocumentBuilder

_HEADING_STYLE = re.compile(r"heading (\d)", re.I)
# Word's outline levels count from 0 for a top heading; 9 means body text.
_BODY_OUTLINE_LEVEL = 9


def extract_word(data: bytes, builder: DocumentBuilder) -> str:
    document = docx.Document(io.BytesIO(data))
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            builder.add_lines(_table_rows(item))
        else:
            level = _heading_level(item)
            if level is None:
                builder.add_block(item.text)
            else:
                builder.add_heading(item.text, level=level)
    return _stored_title(document)


def _heading_level(paragraph: Paragraph) -> int | None:
    """The heading level of `paragraph`'s style (0 for Title), or None for body text.

    Follows the chain of base styles, so a custom style based on "Heading 2" is a level-2
    heading, and reads the outline level a style may set instead of a heading name.
    """
    style = paragraph.style
    seen: set[str] = set()
    # Style ids are checked for cycles: a hostile file can make a style its own base.
    while isinstance(style, ParagraphStyle) and style.style_id not in seen:
        seen.add(style.style_id)
        if style.name == "Title":
            return 0
        match = _HEADING_STYLE.fullmatch(style.name or "")
        if match:
            return int(match.group(1))
        outline = _outline_level(style)
        if outline is not None:
            return outline
        style = style.base_style
    return None


def _table_rows(table: Table) -> list[str]:
    """Rows as "cell | cell" lines; a merged cell is written once, where it starts."""
    rows = []
    for row in table.rows:
        # The cells as stored, not `row.cells`: that repeats a merged cell once per grid column
        # it spans, a count the file sets (a hostile one to billions), and resolves vertical
        # merges by searching the rows above, quadratic in the table's length.
        cells = [_Cell(tc, table) for tc in row._tr.tc_lst]
        rows.append(
            " | ".join("" if cell._tc.vMerge == "continue" else " ".join(cell.text.split()) for cell in cells)
        )
    return rows


def _outline_level(style: ParagraphStyle) -> int | None:
    properties = style.element.pPr
    element = None if properties is None else properties.find(qn("w:outlineLvl"))
    if element is None:
        return None
    value = element.get(qn("w:val"), "")
    return int(value) + 1 if value.isdigit() and int(value) < _BODY_OUTLINE_LEVEL else None


def _stored_title(document: Document) -> str:
    # Asked for missing core properties, python-docx invents them, titled "Word Document".
    try:
        properties = document.part.package.part_related_by(RELATIONSHIP_TYPE.CORE_PROPERTIES)
    except KeyError:
        return ""
    return properties.core_properties.title or ""
