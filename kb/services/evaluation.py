"""Retrieval quality on a folder of documents and a questions file (format: shared/eval/README.md).

A question is answered by a chunk of its gold document that contains its evidence sentence or one
of its answer strings (the README's hit rule). Scores: recall@5 and @10 (a hit in the top k),
MRR@10 (1 / rank of the first hit) and nDCG@10 (binary gains; the ideal ranking puts every chunk
that satisfies the rule first), overall, per language and per source (the file-name prefix).
"""

import json
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from kb.models import Collection
from kb.presets import Preset, apply_preset
from kb.selectors import current_chunks
from kb.services.ingestion import finish_jobs, upload_document
from retrieval.search import search

DEPTH = 10
CUTOFFS = (5, 10)
WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str]
    doc: str | None
    evidence: str | None
    lang: str

    @property
    def answerable(self) -> bool:
        return self.doc is not None

    @property
    def source(self) -> str:
        """The corpus a question comes from, by its document's file-name prefix (en_wiki, zh_cmrc…)."""
        return "_".join(self.doc.split("_")[:2]) if self.doc else ""


def load_questions(path: Path) -> list[Question]:
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            questions.append(
                Question(
                    id=row["id"],
                    question=row["question"],
                    answers=list(row.get("answers") or []),
                    doc=row.get("doc"),
                    evidence=row.get("evidence"),
                    lang=row.get("lang", ""),
                )
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}, line {number}: not a question ({error})") from None
    return questions


def default_collection_name(docs: Path, preset: str = Preset.GENERAL) -> str:
    """One collection per folder, preset and chunking setup, so changed settings never reuse old
    chunks."""
    draft = Collection()
    apply_preset(draft, preset)
    (window, overlap), model = draft.chunking, settings.KB_EMBEDDING_MODEL
    name = f"eval {docs.resolve().parent.name}/{docs.name} ({model}, window {window}, overlap {overlap})"
    return name if preset == Preset.GENERAL else f"{name} {preset}"


def ingest_folder(
    docs: Path,
    collection_name: str,
    *,
    preset: str = Preset.GENERAL,
    on_progress: Callable[[int, int], None] | None = None,
) -> Collection:
    """The folder's files as the documents of the collection (created with `preset` when new):
    unchanged files are kept, changed ones become new versions, documents whose file is gone are
    deleted. Returns when all jobs ended."""
    collection = Collection.objects.filter(name=collection_name).first()
    if collection is None:
        collection = Collection(name=collection_name)
        apply_preset(collection, preset)
        collection.save()
    files = sorted(path for path in docs.iterdir() if path.is_file() and not path.name.startswith("."))
    versions = []
    for path in files:
        with path.open("rb") as content:
            result = upload_document(
                collection=collection, name=path.name, content=content, actor_name="evaluate command"
            )
        versions.append(result.version.pk)
    for document in collection.documents.exclude(source__in=[path.name for path in files]):
        document.delete()

    def progress(ended: int) -> None:
        if on_progress is not None:
            on_progress(ended, len(versions))

    finish_jobs(versions, on_progress=progress)
    return collection


def normalise(text: str) -> str:
    return WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def answers_question(text: str, question: Question) -> bool:
    """The hit rule, on one chunk of the gold document."""
    text = normalise(text)
    needles = [question.evidence or "", *question.answers]
    return any(needle and normalise(needle) in text for needle in needles)


def evaluate_retrieval(
    questions: list[Question],
    collection: Collection,
    *,
    modes: list[str],
    on_progress: Callable[[], None] | None = None,
) -> dict:
    """Scores per mode, then per group ("all", languages, sources)."""
    answerable = [question for question in questions if question.answerable]
    chunks = chunks_by_document(collection)
    scores: dict[str, dict[str, list[dict]]] = {mode: defaultdict(list) for mode in modes}
    for question in answerable:
        relevant = relevant_chunks(question, chunks)
        for mode in modes:
            result = score_search(question.question, collection, relevant, mode=mode)
            for group in ("all", question.lang, question.source):
                scores[mode][group].append(result)
        if on_progress is not None:
            on_progress()
    return {
        mode: {group: mean_scores(results) for group, results in sorted(groups.items())}
        for mode, groups in scores.items()
    }


def chunks_by_document(collection: Collection) -> dict[str, dict[int, str]]:
    """The collection's current chunks: text by chunk id, by document source (file name)."""
    chunks: dict[str, dict[int, str]] = defaultdict(dict)
    rows = current_chunks().filter(version__document__collection=collection)
    for pk, source, text in rows.values_list("pk", "version__document__source", "text"):
        chunks[source][pk] = text
    return chunks


def relevant_chunks(question: Question, chunks: dict[str, dict[int, str]]) -> set[int]:
    """The ids of the chunks that answer the question (the hit rule)."""
    gold = chunks.get(question.doc, {})
    return {pk for pk, text in gold.items() if answers_question(text, question)}


def score_search(query: str, collection: Collection, relevant: set[int], *, mode: str) -> dict[str, float]:
    """The query's top DEPTH hits in the collection, scored against the relevant chunk ids."""
    return score_hits(search(query, scopes=[collection.pk], mode=mode, k=DEPTH), relevant)


def score_hits(hits, relevant: set[int]) -> dict[str, float]:
    """Recall@5/@10, MRR@10 and nDCG@10 of a ranking (the top DEPTH hits count)."""
    return _score([hit.passage_id in relevant for hit in hits[:DEPTH]], len(relevant))


def _score(ranking: list[bool], relevant: int) -> dict[str, float]:
    first = next((rank for rank, hit in enumerate(ranking, start=1) if hit), None)
    dcg = sum(1 / math.log2(rank + 1) for rank, hit in enumerate(ranking, start=1) if hit)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(relevant, DEPTH) + 1))
    result = {f"recall@{k}": float(first is not None and first <= k) for k in CUTOFFS}
    result["mrr@10"] = 1 / first if first else 0.0
    result["ndcg@10"] = dcg / ideal if ideal else 0.0
    return result


def mean_scores(results: list[dict[str, float]]) -> dict[str, float]:
    summary = {"questions": len(results)}
    for metric in results[0]:
        summary[metric] = round(sum(result[metric] for result in results) / len(results), 4)
    return summary


def chunk_count(collection: Collection) -> int:
    return current_chunks().filter(version__document__collection=collection).count()
