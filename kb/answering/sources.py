"""The numbered sources an answer is written from: the most relevant sentences of the chunks found.

A chunk is 320 word pieces; the generator prefills slowly on a CPU (shared/MODELS.md) and the
entailment model reads 192 pieces, so each found chunk is narrowed to a contiguous excerpt around the
sentences richest in the question's rarer words. An excerpt is an exact span of the document's
parsed text, so a citation of it highlights exactly what the generator read.
"""

import math
from dataclasses import dataclass, replace

from kb.ingestion.sentences import split_sentences
from kb.models import Chunk
from retrieval.bm25 import term_rarity
from retrieval.tokenizer import search_tokens


@dataclass(frozen=True)
class Source:
    """Excerpt `text` = the version's parsed_text[char_start:char_end], inside `chunk`; `sentences` are
    its sentences as (start, end) spans of `text`, found once here for the fact-check to reuse."""

    number: int
    chunk: Chunk
    char_start: int
    char_end: int
    text: str
    sentences: tuple[tuple[int, int], ...] = ()

    @property
    def title(self) -> str:
        return self.chunk.version.document.title

    @property
    def page(self) -> int | None:
        return self.chunk.page


def question_terms(question: str, scopes: list[int]) -> dict[str, float]:
    """The question's search terms, each weighted by how rare it is in the searched collections
    (term_rarity): "rupintrivir" tells what a passage is about, "mechanism" hardly."""
    return term_rarity(sorted(set(search_tokens(question))), scopes=scopes)


def select_sources(
    chunks: list[Chunk], terms: dict[str, float], *, max_chars: list[int], min_coverage: float = 0.0
) -> list[Source]:
    """One excerpt per chunk, of at most about the rank's size in `max_chars` (see excerpt_sizes),
    less those holding under `min_coverage` of the question's `terms` (question_coverage): a
    passage about something else only leads a small generator to answer from it. Numbered from 1
    in rank order. Excerpts are placed by the terms' rarity among these chunks' sentences instead
    (_term_weights): what tells one sentence of them from another, not one passage of the
    collections from another."""
    sentences = {chunk.pk: _sentences(chunk) for chunk in chunks}
    weights = _term_weights(set(terms), [tokens for spans in sentences.values() for _, _, tokens in spans])
    sizes = excerpt_sizes(max_chars, len(chunks))
    excerpts = [
        Source(0, chunk, *excerpt(chunk, sentences[chunk.pk], weights, max_chars=size))
        for chunk, size in zip(chunks, sizes, strict=True)
    ]
    kept = [source for source in excerpts if question_coverage(terms, source) >= min_coverage]
    return [replace(source, number=number) for number, source in enumerate(kept, start=1)]


def question_coverage(terms: dict[str, float], source: Source) -> float:
    """The share of the question's `terms`, by weight, that the source (with its title) contains.
    A source holding little of them is about something else: an answer it "supports" is most often
    a wrong one. Weighted by rarity, a passage naming the question's subject but few of its common
    words still counts as about it (README, Performance: "Question terms weighted by rarity")."""
    total = sum(terms.values())
    if not total:
        return 1.0
    found = set(search_tokens(f"{source.title} {source.text}"))
    return sum(weight for term, weight in terms.items() if term in found) / total


def excerpt_sizes(sizes: list[int], count: int) -> list[int]:
    """The excerpt size of each of `count` ranks: `sizes` by rank, its last size past its end."""
    return [sizes[min(rank, len(sizes) - 1)] for rank in range(count)]


def _sentences(chunk: Chunk) -> list[tuple[int, int, set[str]]]:
    """The chunk's sentences as (start, end, search tokens), offsets within the chunk: those found
    when it was indexed, or (chunks indexed before they were stored) split now."""
    spans = [(start, end) for start, end in chunk.sentences] or [
        (s.start, s.end) for s in split_sentences(chunk.text)
    ]
    spans = spans or [(0, len(chunk.text))]
    return [(start, end, set(search_tokens(chunk.text[start:end]))) for start, end in spans]


def _term_weights(terms: set[str], sentences: list[set[str]]) -> dict[str, float]:
    """Each question term weighted by how rare it is among the candidate sentences (idf), so that
    the sentence naming the question's specific thing beats one repeating its common words."""
    count = len(sentences) or 1
    return {term: math.log(1 + count / (1 + sum(term in tokens for tokens in sentences))) for term in terms}


def excerpt(
    chunk: Chunk, sentences: list[tuple[int, int, set[str]]], weights: dict[str, float], *, max_chars: int
) -> tuple[int, int, str, tuple[tuple[int, int], ...]]:
    """(start, end, text, sentence spans of text) in the version's parsed text: the best sentence of
    the chunk, widened by its neighbours, the better of the two sides first, while the span stays
    within `max_chars`."""
    if len(chunk.text) <= max_chars:
        return chunk.char_start, chunk.char_end, chunk.text, tuple((a, b) for a, b, _ in sentences)
    scores = [sum(weights.get(token, 0.0) for token in tokens) for _, _, tokens in sentences]
    first = last = max(range(len(sentences)), key=lambda index: (scores[index], -index))
    while True:
        candidates = [index for index in (first - 1, last + 1) if 0 <= index < len(sentences)]
        candidates = [
            index
            for index in candidates
            if max(sentences[last][1], sentences[index][1]) - min(sentences[first][0], sentences[index][0])
            <= max_chars
        ]
        if not candidates:
            break
        chosen = max(candidates, key=lambda index: (scores[index], -abs(index - first)))
        first, last = min(first, chosen), max(last, chosen)
    start, end = sentences[first][0], sentences[last][1]
    if end - start > max_chars:  # one sentence longer than the budget: keep its beginning
        end = start + max_chars
    spans = tuple((a - start, min(b, end) - start) for a, b, _ in sentences[first : last + 1])
    return chunk.char_start + start, chunk.char_start + end, chunk.text[start:end], spans
