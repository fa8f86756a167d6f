"""./run manage evaluate --docs DIR (--questions FILE | --conversations FILE)
[--mode retrieval|answers|all] [--sample N] [--json OUT]"""

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from kb.answering.policy import combined_policy
from kb.presets import Preset
from kb.services.answer_evaluation import evaluate_answers, evenly_spaced
from kb.services.conversation_evaluation import (
    METHODS,
    evaluate_conversation_answers,
    evaluate_rewrites,
    follow_up_count,
    load_cases,
)
from kb.services.evaluation import (
    chunk_count,
    default_collection_name,
    evaluate_retrieval,
    ingest_folder,
    load_questions,
)
from kb.services.query_transforms import ENGINE_TRANSFORMS, TRANSFORMS
from kb.services.transform_evaluation import evaluate_transforms
from retrieval.search import MODES


def transform_list(value: str) -> list[str]:
    names = (
        list(TRANSFORMS) if value == "all" else [name.strip() for name in value.split(",") if name.strip()]
    )
    unknown = [name for name in names if name not in TRANSFORMS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown transformation {unknown[0]!r}; use {', '.join(TRANSFORMS)}"
        )
    return names


class Command(BaseCommand):
    help = (
        "Ingest a folder of documents into its own collection (reused while the files and the "
        "chunking settings are unchanged) and print retrieval scores for bm25, dense and hybrid, and/or "
        "answer scores (correctness, citations, refusals, fact-check, latency), as JSON. With "
        "--conversations, the follow-ups of multi-turn cases instead: retrieval of each rewrite "
        "method's query, and answers asked in threads."
    )

    def add_arguments(self, parser):
        parser.add_argument("--docs", type=Path, required=True, help="folder of documents")
        asked = parser.add_mutually_exclusive_group(required=True)
        asked.add_argument("--questions", type=Path, help="questions.jsonl")
        asked.add_argument(
            "--conversations",
            type=Path,
            help="multi-turn cases (eval/dev_conversations.jsonl; eval/README.md)",
        )
        parser.add_argument(
            "--mode", choices=["retrieval", "answers", "all"], default="retrieval", help="what to evaluate"
        )
        parser.add_argument(
            "--sample",
            type=int,
            help=(
                "answer about N questions, answerable and unanswerable in the file's proportions "
                "(with --conversations: N cases spread over the file)"
            ),
        )
        parser.add_argument(
            "--collection", help="collection to ingest into (default: named after the folder)"
        )
        parser.add_argument(
            "--preset",
            choices=Preset.values,
            default=Preset.GENERAL,
            help="the preset a new collection is created with (chunking, depth, citations, refusals, style)",
        )
        parser.add_argument(
            "--transforms",
            type=transform_list,
            default=[],
            help=(
                "with --questions: also score these query transformations, comma-separated "
                f"({', '.join(TRANSFORMS)}, or all), on --sample N questions when given"
            ),
        )
        parser.add_argument("--json", type=Path, dest="json_out", help="also write the JSON here")

    def handle(
        self,
        *args,
        docs,
        questions,
        conversations,
        mode,
        sample,
        collection,
        preset,
        transforms,
        json_out,
        **options,
    ):
        if not docs.is_dir():
            raise CommandError(f"{docs} is not a folder")
        if sample is not None and sample < 1:
            raise CommandError("--sample must be at least 1")
        if mode != "retrieval" and not settings.ENGINE_URLS:
            raise CommandError("answers need an engine: start the application with ./run, or set ENGINE_URLS")
        if set(transforms) & set(ENGINE_TRANSFORMS) and not settings.ENGINE_URLS:
            raise CommandError("paraphrase and hypothetical need an engine: start the application with ./run")
        if transforms and conversations:
            raise CommandError("--transforms are scored on --questions")
        try:
            asked = load_questions(questions) if questions else load_cases(conversations)
        except (OSError, ValueError) as error:
            raise CommandError(str(error)) from None
        with tqdm(desc="ingesting", unit="doc", file=sys.stderr, disable=None) as bar:

            def show(ended: int, total: int) -> None:
                bar.total = total
                bar.n = ended
                bar.refresh()

            name = collection or default_collection_name(docs, preset)
            target = ingest_folder(docs, name, preset=preset, on_progress=show)
        window, overlap = target.chunking
        report = {
            "collection": target.name,
            "preset": target.preset,
            "chunks": chunk_count(target),
            "settings": {
                "embedding_model": settings.KB_EMBEDDING_MODEL,
                "chunk_window": window,
                "chunk_overlap": overlap,
                "fusion": settings.RETRIEVAL_FUSION,
                "bm25_weight": settings.RETRIEVAL_BM25_WEIGHT,
                "dense_weight": settings.RETRIEVAL_DENSE_WEIGHT,
                "candidates": settings.RETRIEVAL_CANDIDATES,
            },
        }
        if conversations:
            self._conversations(asked, target, mode, sample, report)
        else:
            self._questions(asked, target, mode, sample, report)
        if transforms:
            chosen = evenly_spaced(asked, sample) if sample else asked
            count = sum(question.answerable for question in chosen) * len(transforms)
            with tqdm(
                total=count, desc="transforming", unit="question", file=sys.stderr, disable=None
            ) as bar:
                report["transforms"] = evaluate_transforms(
                    chosen, target, transforms=transforms, on_progress=bar.update
                )
        text = json.dumps(report, indent=2, ensure_ascii=False)
        if json_out:
            json_out.write_text(text + "\n", encoding="utf-8")
        self.stdout.write(text)

    def _questions(self, asked, target, mode, sample, report):
        answerable = sum(question.answerable for question in asked)
        report |= {"questions": len(asked), "answerable": answerable}
        if mode in ("retrieval", "all"):
            with tqdm(
                total=answerable, desc="searching", unit="question", file=sys.stderr, disable=None
            ) as bar:
                report["retrieval"] = evaluate_retrieval(
                    asked, target, modes=list(MODES), on_progress=bar.update
                )
        if mode in ("answers", "all"):
            chosen = evenly_spaced(asked, sample) if sample else asked
            report["answer_settings"] = {
                "engine_model": settings.KB_ENGINE_MODEL,
                "source_chars": settings.KB_ANSWER_SOURCE_CHARS,
                **asdict(combined_policy([target])),
                "questions_asked": len(chosen),
            }
            with tqdm(
                total=len(chosen), desc="answering", unit="question", file=sys.stderr, disable=None
            ) as bar:
                report["answers"] = evaluate_answers(chosen, target, on_progress=bar.update)

    def _conversations(self, cases, target, mode, sample, report):
        size = min(sample or len(cases), len(cases))
        chosen = [cases[index * len(cases) // size] for index in range(size)]
        report |= {"conversations": len(cases), "follow_ups": follow_up_count(cases)}
        report["rewrite_settings"] = {
            "rewrite": settings.KB_REWRITE,
            "rewrite_model": settings.KB_REWRITE_MODEL if settings.ENGINE_URLS else None,
            "turns": settings.KB_REWRITE_TURNS,
        }
        if mode in ("retrieval", "all"):
            # The engine method needs an engine; without one it would only repeat the rules.
            methods = [method for method in METHODS if method != "engine" or settings.ENGINE_URLS]
            with tqdm(total=len(cases), desc="rewriting", unit="case", file=sys.stderr, disable=None) as bar:
                report["retrieval"] = evaluate_rewrites(
                    cases, target, methods=methods, on_progress=bar.update
                )
        if mode in ("answers", "all"):
            report["answer_settings"] = {"engine_model": settings.KB_ENGINE_MODEL, "cases_asked": size}
            turns = sum(len(case.turns) for case in chosen)
            with tqdm(total=turns, desc="answering", unit="question", file=sys.stderr, disable=None) as bar:
                report["answers"] = evaluate_conversation_answers(chosen, target, on_progress=bar.update)
