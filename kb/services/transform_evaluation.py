"""Query transformations (kb.services.query_transforms) scored on an evaluation set: for each, the
retrieval of the answerable questions searched with it against the plain hybrid search of the same
questions, how many questions it gave a form, and the time it added (p50 / p95)."""

import time
from collections import defaultdict
from collections.abc import Callable

from kb.models import Collection
from kb.services.answer_evaluation import latency_percentiles
from kb.services.evaluation import (
    DEPTH,
    Question,
    chunks_by_document,
    mean_scores,
    relevant_chunks,
    score_hits,
)
from kb.services.query_transforms import fused_search, query_forms
from retrieval.search import search


def evaluate_transforms(
    questions: list[Question],
    collection: Collection,
    *,
    transforms: list[str],
    on_progress: Callable[[], None] | None = None,
) -> dict:
    answerable = [question for question in questions if question.answerable]
    chunks = chunks_by_document(collection)
    scopes = [collection.pk]
    relevant = [relevant_chunks(question, chunks) for question in answerable]
    # The plain hybrid search of each question, the same for every transformation.
    baseline = [
        score_hits(search(question.question, scopes=scopes, k=DEPTH), wanted)
        for question, wanted in zip(answerable, relevant, strict=True)
    ]
    report = {}
    for transform in transforms:
        plain, transformed = defaultdict(list), defaultdict(list)
        changed, added_ms = 0, []
        for question, wanted, plain_scores in zip(answerable, relevant, baseline, strict=True):
            started = time.monotonic()
            forms = query_forms(question.question, transform, scopes=scopes)
            added_ms.append((time.monotonic() - started) * 1000)
            changed += bool(forms)
            hits = fused_search(question.question, forms, scopes=scopes, k=DEPTH)
            for group in ("all", question.lang):
                transformed[group].append(score_hits(hits, wanted))
                plain[group].append(plain_scores)
            if on_progress is not None:
                on_progress()
        report[transform] = {
            "questions": len(answerable),
            "given_a_form": changed,
            "form_ms": latency_percentiles(added_ms),
            "with": {group: mean_scores(rows) for group, rows in sorted(transformed.items())},
            "without": {group: mean_scores(rows) for group, rows in sorted(plain.items())},
        }
    return report
