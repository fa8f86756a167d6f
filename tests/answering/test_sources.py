"""Excerpts: each found chunk narrowed to the sentences around the question's rarest terms."""

import pytest

from kb.answering.sources import question_coverage, select_sources
from kb.ingestion.sentences import split_sentences
from kb.models import Chunk, Document, DocumentVersion
from retrieval.tokenizer import search_tokens

SENTENCES = [
    "The travel desk books every flight for employees of the company.",
    "Economy class is the default for flights under six hours, and business class needs a director.",
    "Hotel rooms are booked for the nights of the trip only.",
    "Receipts must be kept for seven years in the finance archive.",
]
TEXT = " ".join(SENTENCES)
OFFSET = 1000  # where the chunk starts in its version's parsed text


def chunk(sentences=(), *, pk=1, text=TEXT, offset=OFFSET):
    version = DocumentVersion(document=Document(title="Travel policy"))
    return Chunk(
        pk=pk,
        version=version,
        text=text,
        char_start=offset,
        char_end=offset + len(text),
        sentences=list(sentences),
    )


def evenly(question: str) -> dict[str, float]:
    return dict.fromkeys(search_tokens(question), 1.0)


def spans(parts):
    result, start = [], 0
    for part in parts:
        start = TEXT.index(part, start)
        result.append((start, start + len(part)))
    return result


def test_an_excerpt_is_the_sentence_with_the_question_s_terms_at_its_exact_offsets():
    [source] = select_sources(
        [chunk(spans(SENTENCES))], evenly("How long are receipts kept?"), max_chars=[70]
    )
    assert source.text == SENTENCES[3]
    assert (source.char_start, source.char_end) == (OFFSET + TEXT.index(SENTENCES[3]), OFFSET + len(TEXT))
    assert source.sentences == ((0, len(SENTENCES[3])),)


def test_the_sentences_found_at_indexing_are_used_without_splitting_again():
    # Stored spans that cut the second sentence at its comma, as no sentence splitter would.
    parts = [SENTENCES[0], "Economy class is the default for flights under six hours,", "and business"]
    parts += ["class needs a director.", *SENTENCES[2:]]
    [source] = select_sources([chunk(spans(parts))], evenly("Which class is the default?"), max_chars=[60])
    assert source.text == "Economy class is the default for flights under six hours,"


def test_a_chunk_indexed_before_sentences_were_stored_is_split_when_quoted():
    [source] = select_sources([chunk()], evenly("Which class is the default?"), max_chars=[100])
    assert source.text == SENTENCES[1]
    assert [(s.start, s.end) for s in split_sentences(TEXT)] == spans(SENTENCES)


def test_each_rank_gets_its_own_size_and_the_ranks_past_the_list_the_last_one():
    chunks = [chunk(spans(SENTENCES), pk=pk, offset=0) for pk in (1, 2, 3)]
    first, second, third = select_sources(chunks, evenly("Where are the receipts kept?"), max_chars=[200, 70])
    assert first.text == f"{SENTENCES[2]} {SENTENCES[3]}"
    assert second.text == third.text == SENTENCES[3]


def test_a_chunk_holding_too_few_of_the_question_s_terms_is_left_out_and_the_rest_renumbered():
    other = "The canteen serves lunch from noon. It closes at three."
    chunks = [chunk(pk=2, text=other), chunk(spans(SENTENCES))]
    [source] = select_sources(chunks, evenly("How long are receipts kept?"), max_chars=[70], min_coverage=0.5)
    assert source.number == 1 and source.text == SENTENCES[3]
    assert len(select_sources(chunks, evenly("How long are receipts kept?"), max_chars=[70])) == 2


def test_coverage_counts_the_question_s_terms_by_weight():
    """A passage naming the question's rare subject is about it though it holds none of the
    question's common words; one holding only those is not."""
    subject = chunk(pk=2, text="Rupintrivir is a protease inhibitor.")
    common = chunk(pk=3, text="The mechanism of action of most drugs is known.")
    terms = {"mechanism": 0.5, "action": 0.5, "rupintrivir": 3.0}
    [source] = select_sources([subject, common], terms, max_chars=[100], min_coverage=0.5)
    assert source.chunk.pk == 2
    assert question_coverage(terms, source) == pytest.approx(0.75)
