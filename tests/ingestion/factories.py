"""Small documents of every format, written in memory for the parsing tests."""

import io
import zipfile
from collections.abc import Callable

import docx
import openpyxl
import pptx
from docx.document import Document
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.pdfmetrics import registerFont
from reportlab.pdfgen.canvas import Canvas

# A CID font that reportlab ships, so pages can hold Chinese as well as Latin text.
CHINESE_FONT = "STSong-Light"
registerFont(UnicodeCIDFont(CHINESE_FONT))


def pdf_bytes(pages: list[list[str]], *, title: str = "") -> bytes:
    """A PDF whose page n holds the lines pages[n]; an empty list makes a page without text."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=True)
    if title:
        canvas.setTitle(title)
    for lines in pages:
        canvas.setFont(CHINESE_FONT, 12)
        for index, line in enumerate(lines):
            canvas.drawString(72, 770 - 16 * index, line)
        if not lines:
            canvas.rect(72, 500, 200, 200, fill=1)  # a "scanned" page: drawing but no text
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def encrypted_pdf_bytes(*, user_password: str) -> bytes:
    """A one-page PDF encrypted with AES; an empty user password opens without asking."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes([["Confidential figures"]]))))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def docx_bytes(build: Callable[[Document], None]) -> bytes:
    """A DOCX made by `build(document)` with python-docx."""
    document = docx.Document()
    build(document)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def pptx_bytes(slides: list[tuple[str, list[str]]]) -> bytes:
    """A PPTX with one "Title and Content" slide per (title, bullet lines) pair."""
    presentation = pptx.Presentation()
    layout = presentation.slide_layouts[1]
    for title, bullets in slides:
        slide = presentation.slides.add_slide(layout)
        slide.shapes.title.text = title
        slide.placeholders[1].text_frame.text = "\n".join(bullets)
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


def xlsx_bytes(sheets: dict[str, list[list[object]]]) -> bytes:
    """An XLSX with one sheet per name, holding the given rows from A1."""
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A deflated ZIP archive of the given members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def shared_page_pdf_bytes(page_count: int, line: str) -> bytes:
    """A hand-written PDF whose `page_count` pages all draw `line` from one shared content stream,
    so that thousands of pages take a few bytes each."""
    content = b"BT /F1 12 Tf 72 720 Td (%s) Tj ET" % line.encode("ascii")
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
    )
    kids = b" ".join(b"%d 0 R" % (5 + index) for index in range(page_count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, page_count),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        *[page] * page_count,
    ]
    pdf = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_offset = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_offset)
    return bytes(pdf)


def with_part_replaced(data: bytes, name: str, replace: Callable[[bytes], bytes]) -> bytes:
    """A copy of the ZIP `data` whose member `name` is `replace(old_content)`."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    members[name] = replace(members[name])
    return zip_bytes(members)
