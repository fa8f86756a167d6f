"""./run manage bench ingest|search|terms|answers|load|generation [--docs DIR] [--questions FILE] [--chunks N]
[--terms N] [--queries N] [--users N] [--seconds N] [--spawn-rate N] [--url URL]: numbers as JSON."""

import json
import os
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from kb.services.benchmarks import bench_answer_cache, bench_ingest, bench_terms
from kb.services.generation_benchmark import GenerationBenchmarkError, bench_generation
from kb.services.load_benchmark import SPAWN_RATE, LoadBenchmarkError, bench_load
from retrieval.benchmark import bench_search

DEV = settings.BASE_DIR.parent / "shared" / "eval" / "dev"


class Command(BaseCommand):
    help = (
        "Measure and print JSON. 'ingest': pipeline chunks/s against raw model.encode. 'search': BM25 "
        "against rank_bm25, HNSW recall and latency, hybrid and cached latency on a generated corpus. "
        "'terms': sensitive-term matcher build time, memory and scan rate for 1,000 and --terms terms. "
        "'answers': frequent-question cache hit rate and latency over --queries Zipf-distributed questions. "
        "'load': --users virtual users searching, asking and uploading over HTTP against the running "
        "server at --url for --seconds: latency percentiles, errors and the engine's queue depth. "
        "'generation': the answer generator's size, first-token time and decode rate at INT8 and FP32, "
        "throughput of 1, 8 and 32 concurrent requests, first token of the standard answer prompt, INT8 "
        "and FP32 answers to the dev questions compared."
    )

    def add_arguments(self, parser):
        parser.add_argument("what", choices=["ingest", "search", "terms", "answers", "load", "generation"])
        parser.add_argument(
            "--docs", type=Path, default=DEV / "docs", help="documents (vocabulary for search)"
        )
        parser.add_argument("--questions", type=Path, default=DEV / "questions.jsonl", help="search queries")
        parser.add_argument("--chunks", type=int, default=100_000, help="size of the generated search corpus")
        parser.add_argument("--queries", type=int, default=100, help="queries per measurement")
        parser.add_argument("--terms", type=int, default=200_000, help="size of the generated term list")
        parser.add_argument("--users", type=int, default=50, help="virtual users of the load benchmark")
        parser.add_argument("--seconds", type=int, default=120, help="how long the load runs")
        parser.add_argument(
            "--spawn-rate",
            type=float,
            default=SPAWN_RATE,
            help="virtual users started per second (0: all at once)",
        )
        parser.add_argument(
            "--url",
            default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}",
            help="the running server the load goes to",
        )

    def handle(
        self, *args, what, docs, questions, chunks, queries, terms, users, seconds, spawn_rate, url, **options
    ):
        if what == "terms":
            if terms < 1000:
                raise CommandError("--terms must be at least 1000")
            self.stdout.write(json.dumps(bench_terms(terms=terms), indent=2))
            return
        if not docs.is_dir():
            raise CommandError(f"{docs} is not a folder")
        if what == "ingest":
            result = bench_ingest(docs=docs)
        elif what == "generation":
            result = self._generation(docs=docs, questions=questions)
        elif what == "load":
            result = self._load(
                docs=docs, questions=questions, users=users, seconds=seconds, spawn_rate=spawn_rate, url=url
            )
        elif what == "answers":
            if not settings.ENGINE_URLS:
                raise CommandError(
                    "answers need an engine: start the application with ./run, or set ENGINE_URLS"
                )
            result = bench_answer_cache(docs=docs, questions=questions, asks=queries)
        else:
            if not questions.is_file():
                raise CommandError(f"{questions} is not a file")
            if chunks < 100 or queries < 1:
                raise CommandError("--chunks must be at least 100 and --queries at least 1")
            result = bench_search(chunks=chunks, docs=docs, questions=questions, queries=queries)
        self.stdout.write(json.dumps(result, indent=2))

    def _generation(self, *, docs: Path, questions: Path) -> dict:
        if not questions.is_file():
            raise CommandError(f"{questions} is not a file")
        with tqdm(desc="generation", unit="step", file=sys.stderr, disable=None) as progress:

            def step(name: str) -> None:
                progress.set_postfix_str(name)
                progress.update()

            try:
                return bench_generation(docs=docs, questions=questions, on_step=step)
            except (GenerationBenchmarkError, ValueError) as error:  # ValueError: a malformed question line
                raise CommandError(str(error)) from None

    def _load(
        self, *, docs: Path, questions: Path, users: int, seconds: int, spawn_rate: float, url: str
    ) -> dict:
        if users < 1 or seconds < 1:
            raise CommandError("--users and --seconds must be at least 1")
        if spawn_rate < 0:
            raise CommandError("--spawn-rate must be 0 or more")
        if not questions.is_file():
            raise CommandError(f"{questions} is not a file")
        with (
            tqdm(desc="seeding", unit="doc", file=sys.stderr, disable=None) as seeding,
            tqdm(total=seconds, desc="load", unit="s", file=sys.stderr, disable=None) as load,
        ):

            def seeded(ended: int, total: int) -> None:
                seeding.total = total
                seeding.n = ended
                seeding.refresh()

            def second(elapsed: int, totals: dict[str, int]) -> None:
                load.n = elapsed
                load.set_postfix(totals)

            try:
                return bench_load(
                    url=url,
                    users=users,
                    seconds=seconds,
                    spawn_rate=spawn_rate,
                    docs=docs,
                    questions=questions,
                    engine_url=settings.ENGINE_URLS[0] if settings.ENGINE_URLS else "",
                    on_seed_progress=seeded,
                    on_second=second,
                )
            except (LoadBenchmarkError, OSError, ValueError) as error:
                raise CommandError(str(error)) from None
