import pytest

from kb.ingestion import DocumentTooLarge, parse_document
from tests.ingestion.invariants import assert_well_formed

GUIDE = """Setup guide
===========

Intro paragraph with *emphasis* and a [link](https://example.com).

## Install

1. Download the package
2. Run `install.sh`

```bash
# not a heading inside a code block
make install
```

Troubleshooting
---------------

| Symptom | Fix |
|---------|-----|
| Slow    | Add memory |

### 常见问题
中文段落。
"""


def test_atx_and_setext_headings_with_levels_and_exact_offsets():
    document = parse_document(GUIDE.encode(), filename="guide.md")

    assert document.mime == "text/markdown"
    assert [(h.level, h.heading_text) for h in document.headings] == [
        (1, "Setup guide"),
        (2, "Install"),
        (2, "Troubleshooting"),
        (3, "常见问题"),
    ]
    assert document.title == "Setup guide"
    assert_well_formed(document)


def test_markup_is_rendered_to_plain_text_with_lists_code_and_table_rows():
    document = parse_document(GUIDE.encode(), filename="guide.md")

    assert document.text == (
        "Setup guide\n\nIntro paragraph with emphasis and a link.\n\nInstall\n\n"
        "1. Download the package\n\n2. Run install.sh\n\n"
        "# not a heading inside a code block\nmake install\n\n"
        "Troubleshooting\n\nSymptom | Fix\nSlow | Add memory\n\n常见问题\n\n中文段落。"
    )


def test_markdown_is_recognised_by_headings_without_a_file_name():
    assert parse_document(b"# Title\n\nBody").mime == "text/markdown"


def test_txt_name_keeps_hash_lines_as_plain_text():
    document = parse_document(b"# just a comment\nBody", filename="notes.txt")

    assert document.mime == "text/plain"
    assert document.headings == []
    assert document.text == "# just a comment\nBody"


def test_markdown_far_over_the_character_limit_is_refused_before_parsing():
    with pytest.raises(DocumentTooLarge, match="Markdown file has 300,004 characters"):
        parse_document(b"# x\n" + b"[" * 300_000, filename="hostile.md", max_chars=100_000)
