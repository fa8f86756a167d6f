"""What every parsed document must satisfy, whatever its format."""

import re
import unicodedata

from kb.ingestion import ParsedDocument


def assert_well_formed(document: ParsedDocument) -> None:
    """Checks normalisation of the text and that every heading and page offset points into it."""
    text = document.text
    assert unicodedata.is_normalized("NFC", text)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\r]", text)
    assert "\n\n\n" not in text
    assert text == text.strip()
    for heading in document.headings:
        assert (
            text[heading.char_offset : heading.char_offset + len(heading.heading_text)]
            == heading.heading_text
        )
        assert heading.char_offset == 0 or text[heading.char_offset - 1] == "\n"
    previous_end = 0
    for page in document.pages:
        assert previous_end <= page.char_start < page.char_end <= len(text)
        assert text[page.char_start : page.char_end] == text[page.char_start : page.char_end].strip()
        previous_end = page.char_end
