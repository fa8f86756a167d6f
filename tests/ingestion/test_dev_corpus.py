"""The dev evaluation corpus (../shared/eval/dev/docs): real Markdown in English and Chinese."""

import re
from pathlib import Path

import pytest

from kb.ingestion import parse_document
from tests.ingestion.invariants import assert_well_formed

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "eval" / "dev" / "docs"
DOCUMENTS = sorted(CORPUS.glob("*.md")) if CORPUS.is_dir() else []


@pytest.mark.skipif(not DOCUMENTS, reason=f"dev corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.stem)
def test_every_dev_document_parses_with_its_headings(path):
    data = path.read_bytes()
    heading_lines = [line[2:].strip() for line in data.decode().splitlines() if line.startswith("# ")]

    document = parse_document(data, filename=path.name)

    assert document.mime == "text/markdown"
    assert [heading.heading_text for heading in document.headings] == heading_lines
    assert document.title == (heading_lines[0] if heading_lines else path.stem)
    # Nothing but markup is dropped: the text keeps (almost) every other character of the source.
    source_text = re.sub(r"(?m)^#+ |<br>", "", data.decode())
    assert len("".join(document.text.split())) >= 0.99 * len("".join(source_text.split()))
    assert_well_formed(document)
