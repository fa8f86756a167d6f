"""PDF: the text layer of each page, with its page number."""

import io

from pypdf import PasswordType, PdfReader

from kb.ingestion.document import DocumentBuilder
from kb.ingestion.errors import CorruptDocument, DocumentTooLarge, EncryptedDocument

# Extraction time grows with pages even when they hold no text; real documents (manuals, legal
# compilations) stay well below this, and the character limit stops long ones with text sooner.
MAX_PAGES = 20_000
# Writers end a PDF with %%EOF, sometimes followed by padding; a file without one was cut short.
_END_MARKER = b"%%EOF"
_END_MARKER_WINDOW = 2048


def extract_pdf(data: bytes, builder: DocumentBuilder) -> str:
    if _END_MARKER not in data[-_END_MARKER_WINDOW:]:
        raise CorruptDocument("The PDF is incomplete (it has no end marker); it was probably cut short.")
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise EncryptedDocument("The PDF is password-protected. Remove the password and upload it again.")
    if len(reader.pages) > MAX_PAGES:
        raise DocumentTooLarge(
            f"The PDF has {len(reader.pages):,} pages, more than the limit of {MAX_PAGES:,}."
        )
    for number, page in enumerate(reader.pages, start=1):
        builder.start_page(number)
        builder.add_block(page.extract_text())
    title = reader.metadata.title if reader.metadata else None
    return title if isinstance(title, str) else ""
