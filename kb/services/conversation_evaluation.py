"""Follow-up questions on a file of evaluation conversations (format: eval/README.md).

A case is a short thread: its first turn a question, each later turn a follow-up that leans on the
thread ("Is it enveloped?") with `standalone`, the question it stands for ("Is the SARS
coronavirus enveloped?"). Turns carry the questions file's gold fields (doc, evidence, answers).
Only follow-ups are scored; a first question is what the plain evaluation scores.

- Retrieval: each follow-up searched (hybrid) as each method makes it: `as_asked` (no rewrite),
  `rules`, `engine` (its checked rewrite; the rules where it is turned down or fails) and
  `standalone` (the reference question, the ceiling). As in a thread, a method's earlier turns are
  its own rewrites.
- Answers: each case asked in a thread of its own the way the application asks (KB_REWRITE), the
  follow-ups' answers scored like `evaluate --mode answers`.
"""

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from kb.ingestion.language import detect_language
from kb.models import Collection
from kb.services.answer_evaluation import ask_and_score, evaluation_reader, summarise_by_language
from kb.services.conversations import Standalone, rewritten, start_conversation, title_for
from kb.services.evaluation import Question, chunks_by_document, mean_scores, relevant_chunks, score_search

METHODS = ("as_asked", "rules", "engine", "standalone")


@dataclass(frozen=True)
class Turn:
    question: Question
    standalone: str | None  # the reference rewrite; None for the first turn


@dataclass(frozen=True)
class Case:
    id: str
    lang: str
    turns: list[Turn]

    @property
    def follow_ups(self) -> list[Turn]:
        return self.turns[1:]


def load_cases(path: Path) -> list[Case]:
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cases.append(_case(json.loads(line)))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{path}, line {number}: not a conversation ({error})") from None
    if not cases:
        raise ValueError(f"{path} holds no conversation")
    return cases


def _case(row: dict) -> Case:
    rows = row["turns"]
    if not isinstance(rows, list) or len(rows) < 2:
        raise ValueError("a conversation needs a first question and at least one follow-up")
    turns = []
    for index, turn in enumerate(rows):
        standalone = turn.get("standalone")
        if index and not (isinstance(standalone, str) and standalone.strip()):
            raise ValueError(f"follow-up {index} has no standalone question")
        if not isinstance(turn["question"], str) or not turn.get("doc"):
            raise ValueError(f"turn {index} needs a question and its gold doc")
        question = Question(
            id=f"{row['id']}/{index}",
            question=turn["question"],
            answers=list(turn.get("answers") or []),
            doc=turn["doc"],
            evidence=turn.get("evidence"),
            lang=row.get("lang", ""),
        )
        turns.append(Turn(question, standalone if index else None))
    return Case(id=str(row["id"]), lang=row.get("lang", ""), turns=turns)


def follow_up_count(cases: list[Case]) -> int:
    return sum(len(case.follow_ups) for case in cases)


def evaluate_rewrites(
    cases: list[Case],
    collection: Collection,
    *,
    methods: list[str],
    on_progress: Callable[[], None] | None = None,
) -> dict:
    """Per method: how its follow-ups were made ("rewrites": none / rules / engine / reference)
    and the scores of their retrieval, overall and per language."""
    chunks = chunks_by_document(collection)
    scores: dict[str, dict[str, list[dict]]] = {method: defaultdict(list) for method in methods}
    made: dict[str, Counter] = {method: Counter() for method in methods}
    for case in cases:
        for method in methods:
            earlier = [case.turns[0].question.question]
            for turn in case.follow_ups:
                searched = _searched(turn, earlier[-settings.KB_REWRITE_TURNS :], method)
                earlier.append(searched.text)
                made[method][searched.rewrite or ("reference" if method == "standalone" else "none")] += 1
                relevant = relevant_chunks(turn.question, chunks)
                result = score_search(searched.text, collection, relevant, mode="hybrid")
                for group in ("all", case.lang):
                    scores[method][group].append(result)
        if on_progress is not None:
            on_progress()
    return {
        method: {
            "rewrites": dict(made[method]),
            **{group: mean_scores(results) for group, results in sorted(groups.items())},
        }
        for method, groups in scores.items()
    }


def _searched(turn: Turn, earlier: list[str], method: str) -> Standalone:
    asked = turn.question.question
    if method == "as_asked":
        return Standalone(asked)
    if method == "standalone":
        return Standalone(turn.standalone)
    return rewritten(asked, earlier, language=detect_language(asked) or "en", method=method)


def evaluate_conversation_answers(
    cases: list[Case], collection: Collection, *, on_progress: Callable[[], None] | None = None
) -> dict:
    """Every case asked turn by turn in its own thread; the follow-ups' answer scores and how
    their questions were rewritten."""
    user = evaluation_reader(collection)
    rows = []
    for case in cases:
        thread = start_conversation(user=user, title=title_for(case.turns[0].question.question))
        for index, turn in enumerate(case.turns):
            row = ask_and_score(turn.question, user=user, collection=collection, conversation=thread)
            if index:
                rows.append(row)
            if on_progress is not None:
                on_progress()
    summary = summarise_by_language(rows)
    summary["all"]["rewrites"] = dict(Counter(row.get("rewrite") or "none" for row in rows))
    return summary
