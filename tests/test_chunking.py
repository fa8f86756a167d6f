"""Chunking: sentence-aligned token windows that respect headings; language detection; sentences."""

from functools import partial

import pytest
from django.conf import settings

from kb.ingestion.chunking import chunk_document
from kb.ingestion.document import PageSpan, ParsedDocument
from kb.ingestion.language import detect_language
from kb.ingestion.parsing import parse_document
from kb.ingestion.sentences import split_sentences
from retrieval.embedding import count_tokens, token_spans

MODEL = settings.KB_EMBEDDING_MODEL


def chunk(text: str, window: int = 30, overlap: int = 12):
    document = parse_document(text.encode(), filename="policy.md")
    chunks = chunk_document(
        document,
        window=window,
        overlap=overlap,
        count_tokens=partial(count_tokens, MODEL),
        token_spans=partial(token_spans, MODEL),
    )
    return document, chunks


POLICY = """# Travel policy

## Booking

Employees book flights through the travel desk. Economy class is the default for flights under six hours.
Business class needs the approval of a director. Hotel rooms are booked for the nights of the trip only.
Receipts must be kept for seven years. Lost receipts are replaced by a signed declaration.

## Expenses

Meals are reimbursed up to 60 EUR per day in Germany. Taxis are reimbursed when no public transport runs.
"""


def test_chunks_are_exact_passages_within_the_window():
    document, chunks = chunk(POLICY)
    assert len(chunks) > 2
    for piece in chunks:
        assert document.text[piece.char_start : piece.char_end] == piece.text
        assert count_tokens(MODEL, [piece.text])[0] <= 30


def test_chunks_end_at_sentence_boundaries_and_overlap_within_a_section():
    document, chunks = chunk(POLICY)
    sentences = split_sentences(document.text)
    starts = {sentence.start for sentence in sentences}
    ends = {sentence.end for sentence in sentences}
    for piece in chunks:
        assert piece.char_start in starts and piece.char_end in ends
    booking = [piece for piece in chunks if piece.heading_path == ["Travel policy", "Booking"]]
    assert len(booking) >= 2
    assert booking[1].char_start < booking[0].char_end  # the overlap


def test_each_chunk_keeps_the_spans_of_its_sentences():
    document, chunks = chunk(POLICY)
    sentences = {(s.start, s.end) for s in split_sentences(document.text)}
    for piece in chunks:
        assert piece.sentences[0][0] == 0 and piece.sentences[-1][1] == len(piece.text)
        assert {(piece.char_start + a, piece.char_start + b) for a, b in piece.sentences} <= sentences
    assert sum(len(piece.sentences) for piece in chunks) > len(chunks)


def test_chunks_never_cross_a_heading_and_carry_its_path():
    document, chunks = chunk(POLICY)
    paths = [piece.heading_path for piece in chunks]
    assert ["Travel policy", "Expenses"] in paths
    assert ["Travel policy"] not in paths  # the title alone is no passage
    expenses = document.text.index("Expenses")
    for piece in chunks:
        assert not piece.char_start < expenses < piece.char_end


def test_a_sentence_longer_than_the_window_is_cut_at_word_pieces():
    long_sentence = " ".join(f"clause{i} applies" for i in range(80)) + "."
    document, chunks = chunk(f"# Terms\n\n{long_sentence}\n", window=50, overlap=10)
    body = [piece for piece in chunks if "clause0 " in piece.text or "clause79" in piece.text]
    assert len(chunks) >= 4 and body
    assert all(count_tokens(MODEL, [piece.text])[0] <= 50 for piece in chunks)
    assert chunks[-1].text.endswith("clause79 applies.")


def test_english_entities_are_kept_per_chunk():
    _, chunks = chunk("Acme Corporation opened an office in Berlin on 3 March 2025.\n")
    labels = {(entity["text"], entity["label"]) for entity in chunks[0].entities}
    assert ("Berlin", "GPE") in labels
    assert any(label == "ORG" for _, label in labels)


def test_english_sentences_are_not_cut_inside_brackets():
    # spaCy alone cuts each of the first two sentences at "[" (as it did in 1 of 9 dev sentences).
    sentences = [
        "The radiology department was divided into four areas [6]: contaminated, semicontaminated,\n"
        "buffer, and clean areas (Figure 1).",
        "Vaccination reduced pneumonia by 37% in the Gambia [15] , 25% in South Africa [16] and 26% "
        "in the Philippines [17] .",
        "The contaminated area is connected to the fever clinic.",
    ]
    text = " ".join(sentences)
    assert [text[s.start : s.end] for s in split_sentences(text)] == sentences


def test_chinese_text_is_split_at_chinese_punctuation():
    sentences = [
        "几内亚法郎是几内亚的流通货币。",
        "辅币单位为分！",
        "1944年，几内亚被纳入法属西非？",
        "是的。",
        "《停止!! 云雀》是漫画。",  # not cut inside the title's brackets
    ]
    text = "".join(sentences)
    assert [text[s.start : s.end] for s in split_sentences(text)] == sentences
    assert {s.language for s in split_sentences(text)} == {"zh"}


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("The refund is paid within 30 days.", "en"),
        ("退款在三十天内支付。", "zh"),
        ("使用 Kubernetes 部署服务时需要配置资源限制。", "zh"),
        ("2025-03-01 12:00", ""),
    ],
)
def test_language_is_detected_from_the_script(text, language):
    assert detect_language(text) == language


def test_each_chunk_carries_the_page_it_starts_on():
    pages = [f"Page {n} says that clause {n} applies to every tenant of the building." for n in (1, 2, 4)]
    text = "\n\n".join(pages)
    spans, position = [], 0
    for number, page in zip((1, 2, 4), pages, strict=True):  # page 3 had no text
        spans.append(PageSpan(number, position, position + len(page)))
        position += len(page) + 2
    document = ParsedDocument(text=text, mime="application/pdf", title="Lease", pages=spans, headings=[])
    chunks = chunk_document(
        document,
        window=16,
        overlap=0,
        count_tokens=partial(count_tokens, MODEL),
        token_spans=partial(token_spans, MODEL),
    )
    assert [(c.page, c.text[:6]) for c in chunks] == [(1, "Page 1"), (2, "Page 2"), (4, "Page 4")]
