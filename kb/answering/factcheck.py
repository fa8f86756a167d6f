"""The fact-check pass: every answer sentence tested against the sources, one verdict each.

A sentence is **supported** when the entailment model (inference.factcheck, trained on the
commercially usable NLI rows) gives some source about the question (holding enough of the
question's search terms, weighted by rarity) P(supported) at or above its threshold and no number
or name in it is missing from that source (consistency.py); those sources become its citations,
whatever markers the generator put. Otherwise it is **unsupported** when the generator cited a
source for it or a source is close to it in meaning (embedding similarity), and **no citation**
when nothing relates to it at all, or when it states nothing (a question, a stray fragment).
"""

import functools
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from inference.factcheck.entailment import EntailmentModel
from kb.answering.citations import DraftSentence
from kb.answering.consistency import unsupported_details
from kb.answering.sources import Source, question_coverage
from kb.models import AnswerSentence
from retrieval.embedding import embed_passages
from retrieval.tokenizer import search_tokens

Verdict = AnswerSentence.Verdict
# Consecutive source sentences a claim is also checked against on their own (see _support).
PREMISE_SENTENCES = 2
# The longest premise: the entailment model reads 192 word pieces, about 600 characters of English
# beside a one-sentence claim; a longer excerpt is checked as runs of its sentences that fit.
PREMISE_CHARS = 600
# Quotes and brackets that may follow a sentence's own end: 'Was it "approved?"' still asks.
CLOSING_MARKS = "\"'”’」』)）]】"
# The embedding model of the related-sentence check (not the index's: see _similarities).
SIMILARITY_MODEL = "all-MiniLM-L6-v2"


@dataclass
class CheckedSentence:
    text: str
    verdict: str
    support: float | None  # the best source's P(supported)
    citations: list[int] = field(default_factory=list)  # source numbers, best first
    problems: list[str] = field(default_factory=list)


@functools.cache
def entailment_model() -> EntailmentModel:
    return EntailmentModel.load()


def check_sentences(
    sentences: list[DraftSentence],
    sources: list[Source],
    *,
    question: str,
    terms: dict[str, float],
    threshold: float | None = None,
) -> list[CheckedSentence]:
    """A verdict for each sentence, in order; a passage backs a sentence from P(supported)
    `threshold` (the collection's citation strictness; default KB_FACTCHECK_THRESHOLD) when it holds
    enough of the question's `terms` (sources.question_terms)."""
    if not sentences:
        return []
    if not sources:
        return [CheckedSentence(sentence.text, Verdict.NO_CITATION, None) for sentence in sentences]
    probabilities = _support(sentences, sources)
    similarities = _similarities(
        [sentence.text for sentence in sentences], [source.text for source in sources]
    )
    threshold = settings.KB_FACTCHECK_THRESHOLD if threshold is None else threshold
    coverage = np.array([question_coverage(terms, source) for source in sources])
    on_topic = coverage >= settings.KB_FACTCHECK_MIN_QUESTION_COVERAGE
    checked = []
    for row, sentence in enumerate(sentences):
        if not _states_something(sentence.text):
            checked.append(CheckedSentence(sentence.text, Verdict.NO_CITATION, None))
            continue
        # Of the passages that back the sentence, the one cited both supports it and is about the
        # question: on dev, ordering by support alone cited more passages behind wrong answers.
        order = np.argsort(-(probabilities[row] * coverage), kind="stable")
        backing = [
            sources[index] for index in order if probabilities[row, index] >= threshold and on_topic[index]
        ]
        backing = backing[: settings.KB_ANSWER_MAX_CITATIONS_PER_SENTENCE]
        best = float(probabilities[row].max())
        if backing:
            evidence = " ".join([source.text for source in backing] + [question])
            problems = unsupported_details(sentence.text, evidence)
            if not problems:
                numbers = [source.number for source in backing]
                checked.append(CheckedSentence(sentence.text, Verdict.SUPPORTED, best, numbers))
                continue
        else:
            problems = []
        related = bool(sentence.marked) or similarities[row].max() >= settings.KB_FACTCHECK_RELATED_SIMILARITY
        verdict = Verdict.UNSUPPORTED if related else Verdict.NO_CITATION
        checked.append(CheckedSentence(sentence.text, verdict, best, [], problems))
    return checked


def _states_something(text: str) -> bool:
    """False for a sentence that asks ("When was the cluster reported?") or holds no word worth
    searching (".the", left over from a source's ellipsis): no passage can back it, though the
    entailment model, reading its words in the passage, may say one does."""
    asks = text.rstrip().rstrip(CLOSING_MARKS).endswith(("?", "？"))
    return not asks and bool(search_tokens(text))


def _support(sentences: list[DraftSentence], sources: list[Source]) -> np.ndarray:
    """P(supported) of each sentence by each source: the best over the source's premises (_premises).
    The model reads 192 word pieces, so a long excerpt would lose its end; and a claim it aligns with
    one passage sentence is judged on that sentence, not diluted by the rest.

    Each premise starts with the source's title: a passage need not repeat what its document is about
    ("Respiratory viruses in Ilorin, Nigeria"), and the model counts any word of the claim it cannot
    match against the claim."""
    premises = [[f"{source.title}. {text}" for text in _premises(source)] for source in sources]
    pairs, owners = [], []
    for row, sentence in enumerate(sentences):
        for column, texts in enumerate(premises):
            pairs += [(premise, sentence.text) for premise in texts]
            owners += [(row, column)] * len(texts)
    probabilities = np.zeros((len(sentences), len(sources)))
    for (row, column), probability in zip(
        owners, entailment_model().support_probabilities(pairs), strict=True
    ):
        probabilities[row, column] = max(probabilities[row, column], probability)
    return probabilities


def _premises(source: Source) -> list[str]:
    """The excerpt, or where it is longer than the model reads each longest run of its sentences
    within PREMISE_CHARS; and each window of PREMISE_SENTENCES consecutive sentences."""
    spans = source.sentences
    if len(spans) <= PREMISE_SENTENCES:
        return [source.text]
    windows = [
        source.text[spans[index][0] : spans[index + PREMISE_SENTENCES - 1][1]]
        for index in range(len(spans) - PREMISE_SENTENCES + 1)
    ]
    return list(dict.fromkeys(_runs(source) + windows))


def _runs(source: Source) -> list[str]:
    """The excerpt when it fits PREMISE_CHARS, else each longest run of its sentences that does
    (one not inside the run before it)."""
    if len(source.text) <= PREMISE_CHARS:
        return [source.text]
    spans, runs, last = source.sentences, [], -1
    for first in range(len(spans)):
        end = first
        while end + 1 < len(spans) and spans[end + 1][1] - spans[first][0] <= PREMISE_CHARS:
            end += 1
        if end > last:
            runs.append(source.text[spans[first][0] : spans[end][1]])
            last = end
    return runs


def _similarities(sentences: list[str], passages: list[str]) -> np.ndarray:
    """Cosine similarity of each sentence to each passage, with MiniLM whatever the index uses:
    KB_FACTCHECK_RELATED_SIMILARITY was chosen on its scores (e5's sit in a narrow 0.7-0.9 band)."""
    vectors = np.array(embed_passages(SIMILARITY_MODEL, sentences + passages))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    return vectors[: len(sentences)] @ vectors[len(sentences) :].T
