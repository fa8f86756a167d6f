"""Answer quality on an evaluation set: correctness, citations, refusals, fact-check and latency.

Each question is asked through `answers.ask` as an evaluation user who reads only the evaluated
collection, without the frequent-question cache (so every latency is a real one). Scores, overall
and per language:

- exact match and token F1 of the answer (markers removed) against the best gold answer; Chinese is
  compared character by character; `contains_answer`: a gold answer appears in it;
- citation precision: the share of citations whose passage, in the gold document, overlaps the
  evidence or contains a gold answer; citation recall: the share of answered answerable questions
  with at least one such citation;
- refusal rate on unanswerable questions, false refusals on answerable ones;
- fact-check agreement: the share of generated answers where the fact-check's decision (some
  sentence supported, so the answer is given) agrees with the gold (answerable, and the generated
  text contains a gold answer or has token F1 of at least 0.5 with one);
- p50 / p95 of the answer latency and of the time to the first token.
"""

import re
import string
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from inference.factcheck.metrics import accuracy, roc_auc
from kb.answering.citations import MARKER
from kb.ingestion.language import CHINESE
from kb.models import Answer, Collection
from kb.services.answers import ask
from kb.services.evaluation import Question, normalise
from retrieval.search import InvalidQuery

EVALUATION_USER = "evaluate"
EVALUATION_GROUP = "evaluation readers"
CORRECT_F1 = 0.5
REFUSALS = (Answer.Outcome.NOT_FOUND, Answer.Outcome.BLOCKED)
PUNCTUATION = set(string.punctuation) | set("，。！？、；：“”‘’（）《》【】")
ARTICLES = re.compile(r"\b(a|an|the)\b")


def evaluation_reader(collection: Collection):
    """A user who reads `collection` (and whatever else the group was given) and nothing more."""
    group, _ = Group.objects.get_or_create(name=EVALUATION_GROUP)
    collection.reader_groups.add(group)
    user, created = get_user_model().objects.get_or_create(username=EVALUATION_USER)
    if created:
        user.set_unusable_password()
        user.save()
    user.groups.add(group)
    return user


def evenly_spaced(questions: list[Question], size: int) -> list[Question]:
    """About `size` questions spread evenly over the file, answerable and unanswerable ones each in
    their own proportion (they are not spread evenly in the file)."""
    chosen = []
    for answerable in (True, False):
        group = [question for question in questions if question.answerable == answerable]
        share = max(1, round(size * len(group) / len(questions))) if group else 0
        chosen += [group[round(index * len(group) / share)] for index in range(share)] if share else []
    return chosen


def evaluate_answers(
    questions: list[Question], collection: Collection, *, on_progress: Callable[[], None] | None = None
) -> dict:
    user = evaluation_reader(collection)
    rows = []
    for question in questions:
        rows.append(ask_and_score(question, user=user, collection=collection))
        if on_progress is not None:
            on_progress()
    return summarise_by_language(rows)


def ask_and_score(question: Question, *, user, collection: Collection, conversation=None) -> dict:
    """One question asked (in `conversation`, when given) without the cache, and its scores."""
    try:
        asked = ask(
            user=user,
            question=question.question,
            collections=[collection.name],
            conversation=conversation,
            use_cache=False,
        )
    except InvalidQuery as error:
        return {"question": question, "error": str(error)}
    return _score(question, asked)


def summarise_by_language(rows: list[dict]) -> dict:
    """The scores of `ask_and_score` rows: overall ("all") and per language."""
    groups = defaultdict(list)
    for row in rows:
        groups["all"].append(row)
        groups[row["question"].lang].append(row)
    return {group: _summary(group_rows) for group, group_rows in sorted(groups.items())}


def _score(question: Question, asked) -> dict:
    answer = asked.answer
    text = MARKER.sub("", answer.text).strip()
    generated = MARKER.sub("", answer.generated_text).strip()
    chinese = question.lang == CHINESE
    row = {
        "question": question,
        "refused": answer.outcome in REFUSALS,
        "outcome": answer.outcome,
        "latency_ms": asked.latency_ms,
        "first_token_ms": answer.first_token_ms,
        "invalid_markers": answer.invalid_markers,
        "rewrite": asked.rewrite,
    }
    if question.answerable and answer.outcome == Answer.Outcome.ANSWERED:
        row["exact_match"] = max(
            float(_normal(text, chinese) == _normal(gold, chinese)) for gold in question.answers
        )
        row["f1"] = max(token_f1(text, gold, chinese=chinese) for gold in question.answers)
        row["contains_answer"] = float(any(normalise(gold) in normalise(text) for gold in question.answers))
        row["citations"] = [_citation_correct(citation, question) for citation in answer.citations.all()]
    if answer.generated_text:
        gold_correct = question.answerable and _correct(generated, question, chinese)
        row["factcheck_agrees"] = (answer.outcome == Answer.Outcome.ANSWERED) == gold_correct
    return row


def _correct(text: str, question: Question, chinese: bool) -> bool:
    return any(
        normalise(gold) in normalise(text) or token_f1(text, gold, chinese=chinese) >= CORRECT_F1
        for gold in question.answers
    )


def _citation_correct(citation, question: Question) -> bool:
    """The cited passage is in the gold document and overlaps its evidence or holds a gold answer."""
    if citation.version is None or citation.document.source != question.doc:
        return False
    text = citation.version.parsed_text
    passage = normalise(text[citation.char_start : citation.char_end])
    if any(gold and normalise(gold) in passage for gold in question.answers):
        return True
    start = text.find(question.evidence or "\0")
    return start >= 0 and start < citation.char_end and citation.char_start < start + len(question.evidence)


def token_f1(prediction: str, gold: str, *, chinese: bool) -> float:
    """SQuAD's token F1 (CMRC's character F1 for Chinese)."""
    predicted, expected = _tokens(prediction, chinese), _tokens(gold, chinese)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def _normal(text: str, chinese: bool) -> str:
    return "".join(_tokens(text, chinese)) if chinese else " ".join(_tokens(text, chinese))


def _tokens(text: str, chinese: bool) -> list[str]:
    text = "".join(character for character in normalise(text) if character not in PUNCTUATION)
    if chinese:
        return [character for character in text if not character.isspace()]
    return ARTICLES.sub(" ", text).split()


def _summary(rows: list[dict]) -> dict:
    answerable = [row for row in rows if "error" not in row and row["question"].answerable]
    unanswerable = [row for row in rows if "error" not in row and not row["question"].answerable]
    answered = [row for row in answerable if "f1" in row]
    citations = [correct for row in answered for correct in row["citations"]]
    agreements = [row["factcheck_agrees"] for row in rows if "factcheck_agrees" in row]
    latencies = [row["latency_ms"] for row in rows if "error" not in row]
    first_tokens = [row["first_token_ms"] for row in rows if row.get("first_token_ms") is not None]
    return {
        "questions": len(rows),
        "errors": sum("error" in row for row in rows),
        "answerable": len(answerable),
        "answered": len(answered),
        "exact_match": _mean([row["exact_match"] for row in answered]),
        "f1": _mean([row["f1"] for row in answered]),
        "f1_over_answerable": _mean([row.get("f1", 0.0) for row in answerable]),
        "contains_answer": _mean([row["contains_answer"] for row in answered]),
        "citation_precision": _mean(citations),
        "citation_recall": _mean([float(any(row["citations"])) for row in answered]),
        "citations_per_answer": _mean([len(row["citations"]) for row in answered]),
        "invalid_markers_removed": sum(row.get("invalid_markers", 0) for row in rows),
        "unanswerable": len(unanswerable),
        "refusal_rate_unanswerable": _mean([float(row["refused"]) for row in unanswerable]),
        "false_refusal_rate_answerable": _mean([float(row["refused"]) for row in answerable]),
        "factcheck_agreement": _mean([float(agrees) for agrees in agreements]),
        "latency_ms": latency_percentiles(latencies),
        "first_token_ms": latency_percentiles(first_tokens),
    }


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def latency_percentiles(values: Sequence[float]) -> dict:
    """p50 and p95 of latencies in ms, rounded to whole ms (None for no values)."""
    if not values:
        return {"p50": None, "p95": None}
    return {"p50": round(float(np.percentile(values, 50))), "p95": round(float(np.percentile(values, 95)))}


def factcheck_scores(probabilities: Sequence[float], labels: Sequence[bool], *, threshold: float) -> dict:
    """Accuracy and F1 at `threshold`, and ROC AUC, of P(supported) against the labels. F1 is given
    for both classes: `unsupported` is the hallucination the fact-check exists to catch."""
    predicted = np.asarray(probabilities) >= threshold
    actual = np.asarray(labels, bool)
    return {
        "claims": len(labels),
        "threshold": round(threshold, 4),
        "accuracy": round(accuracy(probabilities, labels, threshold), 4),
        "f1_supported": round(_f1(predicted, actual), 4),
        "f1_unsupported": round(_f1(~predicted, ~actual), 4),
        "roc_auc": round(roc_auc(probabilities, labels), 4),
    }


def _f1(predicted: np.ndarray, actual: np.ndarray) -> float:
    true_positives = int((predicted & actual).sum())
    if not true_positives:
        return 0.0
    precision, recall = true_positives / predicted.sum(), true_positives / actual.sum()
    return float(2 * precision * recall / (precision + recall))
