"""PPTX: one section per slide, numbered as a page, its title as a heading, then its shapes' text."""

import io
from collections.abc import Iterable, Iterator

import pptx
from pptx.opc.constants import RELATIONSHIP_TYPE
from pptx.presentation import Presentation
from pptx.shapes.base import BaseShape
from pptx.shapes.group import GroupShape

from kb.ingestion.document import DocumentBuilder


def extract_powerpoint(data: bytes, builder: DocumentBuilder) -> str:
    presentation = pptx.Presentation(io.BytesIO(data))
    for number, slide in enumerate(presentation.slides, start=1):
        builder.start_page(number)
        title = slide.shapes.title
        if title is not None:
            builder.add_heading(title.text_frame.text, level=1)
        for shape in _flattened(slide.shapes):
            if title is None or shape.shape_id != title.shape_id:
                _add_shape(shape, builder)
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            builder.add_block(slide.notes_slide.notes_text_frame.text)
    return _stored_title(presentation)


def _flattened(shapes: Iterable[BaseShape]) -> Iterator[BaseShape]:
    """The shapes in document order, with groups replaced by their members at any depth."""
    # An explicit stack rather than recursion: group nesting depth is up to the file's author.
    stack = [iter(shapes)]
    while stack:
        shape = next(stack[-1], None)
        if shape is None:
            stack.pop()
        elif isinstance(shape, GroupShape):
            stack.append(iter(shape.shapes))
        else:
            yield shape


def _add_shape(shape: BaseShape, builder: DocumentBuilder) -> None:
    if shape.has_text_frame:
        builder.add_block(shape.text_frame.text)
    elif shape.has_table:
        builder.add_lines(
            " | ".join(" ".join(cell.text.split()) for cell in row.cells) for row in shape.table.rows
        )


def _stored_title(presentation: Presentation) -> str:
    # Asked for missing core properties, python-pptx invents them, titled "PowerPoint Presentation".
    try:
        properties = presentation.part.package.part_related_by(RELATIONSHIP_TYPE.CORE_PROPERTIES)
    except KeyError:
        return ""
    return properties.title or ""
