"""Plain text: the text itself, with no structure to find."""

from kb.ingestion.document import DocumentBuilder


def extract_plain_text(text: str, builder: DocumentBuilder) -> str:
    builder.add_block(text)
    return ""
