"""Ingestion of uploaded documents; `parse_document` turns a file's bytes into structured text."""

from kb.ingestion.document import Heading, PageSpan, ParsedDocument
from kb.ingestion.errors import (
    CorruptDocument,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    ParseError,
    UnsupportedFormat,
)
from kb.ingestion.parsing import parse_document

__all__ = [
    "CorruptDocument",
    "DocumentTooLarge",
    "EmptyDocument",
    "EncryptedDocument",
    "Heading",
    "PageSpan",
    "ParseError",
    "ParsedDocument",
    "UnsupportedFormat",
    "parse_document",
]
