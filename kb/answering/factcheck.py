"""The fact-check pass: every answer sentence tested against the sources, one verdict each.

A sentence is **supported** when the entailment model (inference.factcheck, trained on the
commercially usable NLI rows) gives some source P(supported) at or above its threshold and no
number or name in it is missing from those sources (consistency.py); those sources become its
citations, whatever markers the generator put. Otherwise it is **unsupported** when the generator
cited a source for it or a source is close to it in meaning (embedding similarity), and **no
citation** when nothing relates to it at all.
"""

import functools
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from inference.factcheck.entailment import EntailmentModel
from kb.answering.citations import DraftSentence
from kb.answering.consistency import unsupported_details
from kb.answering.sources import Source
from kb.models import AnswerSentence
from retrieval.embedding import embed_passages

Verdict = AnswerSentence.Verdict


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
    sentences: list[DraftSentence], sources: list[Source], *, question: str
) -> list[CheckedSentence]:
    """A verdict for each sentence, in order."""
    if not sentences:
        return []
    if not sources:
        return [CheckedSentence(sentence.text, Verdict.NO_CITATION, None) for sentence in sentences]
    pairs = [(source.text, sentence.text) for sentence in sentences for source in sources]
    probabilities = np.array(entailment_model().support_probabilities(pairs)).reshape(len(sentences), -1)
    similarities = _similarities(
        [sentence.text for sentence in sentences], [source.text for source in sources]
    )
    threshold = settings.KB_FACTCHECK_THRESHOLD
    checked = []
    for row, sentence in enumerate(sentences):
        order = np.argsort(-probabilities[row], kind="stable")
        backing = [sources[index] for index in order if probabilities[row, index] >= threshold]
        backing = backing[: settings.KB_ANSWER_MAX_CITATIONS_PER_SENTENCE]
        best = float(probabilities[row, order[0]])
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


def _similarities(sentences: list[str], passages: list[str]) -> np.ndarray:
    """Cosine similarity of each sentence to each passage, with the retrieval embedding model."""
    vectors = np.array(embed_passages(settings.KB_EMBEDDING_MODEL, sentences + passages))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    return vectors[: len(sentences)] @ vectors[len(sentences) :].T
