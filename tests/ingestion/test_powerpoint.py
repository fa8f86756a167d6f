import io

import pptx
from pptx.util import Inches

from kb.ingestion import parse_document
from tests.ingestion.factories import pptx_bytes
from tests.ingestion.invariants import assert_well_formed

PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


def test_each_slide_is_a_page_headed_by_its_title():
    document = parse_document(
        pptx_bytes([("Roadmap", ["Launch in May", "Hire two engineers"]), ("路线图", ["五月发布"])])
    )

    assert document.mime == PPTX
    assert document.text == "Roadmap\n\nLaunch in May\nHire two engineers\n\n路线图\n\n五月发布"
    assert [(h.level, h.heading_text) for h in document.headings] == [(1, "Roadmap"), (1, "路线图")]
    slides = [(p.page_number, document.text[p.char_start : p.char_end]) for p in document.pages]
    assert slides == [(1, "Roadmap\n\nLaunch in May\nHire two engineers"), (2, "路线图\n\n五月发布")]
    assert document.title == "Roadmap"
    assert_well_formed(document)


def test_tables_grouped_shapes_and_notes_are_read():
    presentation = pptx.Presentation()
    slide = presentation.slides.add_slide(presentation.slide_layouts[5])
    slide.shapes.title.text = "Budget"
    table = slide.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (row, column), text in {(0, 0): "Item", (0, 1): "Cost", (1, 0): "Travel", (1, 1): "1200"}.items():
        table.cell(row, column).text = text
    group = slide.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(4), Inches(2), Inches(1)).text_frame.text = "Grouped note"
    slide.notes_slide.notes_text_frame.text = "Speaker notes"
    buffer = io.BytesIO()
    presentation.save(buffer)

    document = parse_document(buffer.getvalue())

    assert document.text == "Budget\n\nItem | Cost\nTravel | 1200\n\nGrouped note\n\nSpeaker notes"
