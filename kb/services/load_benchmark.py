"""Mixed search / ask / upload traffic over HTTP against a running server: `manage.py bench load`.

Virtual users (one asyncio task each, one API token each) start `spawn_rate` a second, as locust's
do, then loop: think for a random while, then search (mostly), ask (sometimes) or upload a small new
document (rarely) through the REST API at /api/v1/. The report gives, per kind of request, the
count (and the rate: requests started per second of the run), the errors by status and the latency
percentiles of the successful ones, and what the engine's /metrics showed meanwhile (how deep its
queue was).

The bench makes its own fixture through the ORM, in the server's database: a group, a collection
readable and curated by it, seeded from a folder of documents (ingested before the clock starts),
the users and their tokens; one search and one question warm the server up. All of it, the users'
questions and the documents uploaded during the run go again at the end; audit events stay (the
trail is append-only).
"""

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.storage import default_storage

from kb.models import Answer, Collection, DocumentVersion
from kb.services.documents import delete_collection
from kb.services.evaluation import load_questions
from kb.services.ingestion import finish_jobs, upload_document
from kb.services.tokens import create_token

KINDS = ("search", "ask", "upload")
# What a virtual user does after each think: mostly searches, some questions, few uploads. Each
# user stays well under the default per-token rate limits (search 120/min, ask 20/min).
MIX = {"search": 0.75, "ask": 0.20, "upload": 0.05}
THINK_SECONDS = (0.5, 2.0)
# Users started per second. All 50 at once is a burst no office produces (everybody's first
# request within two seconds): it measures how fast the web process drains a queue of about 50
# searches, not the steady state; `--spawn-rate 0` runs it so all the same.
SPAWN_RATE = 5.0
# The requirement's target: 0 errors and search p95 under this while the engine is saturated.
SEARCH_P95_TARGET_MS = 300
# A search or an upload slower than this is a timeout (an error); an ask may take as long as the
# server waits for the engine (KB_ANSWER_TIMEOUT) and this much more. Requests still running when
# the time is up are waited for (so their latency counts, and the server is done with them before
# the clean-up deletes their users), each within its timeout.
REQUEST_TIMEOUT_SECONDS = 30
ENGINE_SAMPLE_SECONDS = 1.0
FIRST_ERRORS_KEPT = 5
NAME_PREFIX = "Load benchmark"


class LoadBenchmarkError(Exception):
    """The benchmark cannot run (no server at the URL, nothing to seed, no queries)."""


@dataclass(frozen=True)
class LoadFixture:
    collection: Collection
    group: Group
    users: list
    keys: list[str]  # the users' token keys, in the same order
    seeded: list[int]  # versions of the seed documents


@dataclass
class KindStats:
    latencies_ms: list[float] = field(default_factory=list)  # successful requests only
    errors: Counter = field(default_factory=Counter)  # "429", "500", "timeout", "connection"…
    outcomes: Counter = field(default_factory=Counter)  # asks: answer outcome
    cache_hits: int = 0  # asks answered from the frequent-question cache

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + sum(self.errors.values())


@dataclass
class LoadRun:
    """What the virtual users measured, filled in while they run."""

    stats: dict[str, KindStats] = field(default_factory=lambda: {kind: KindStats() for kind in KINDS})
    uploaded: list[int] = field(default_factory=list)  # versions the uploads created
    first_errors: list[str] = field(default_factory=list)
    engine_samples: list[dict[str, float]] = field(default_factory=list)

    def error(self, kind: str, reason: str, detail: str) -> None:
        self.stats[kind].errors[reason] += 1
        if len(self.first_errors) < FIRST_ERRORS_KEPT:
            self.first_errors.append(f"{kind}: {reason} {detail}"[:300])

    def totals(self) -> dict[str, int]:
        return {
            "requests": sum(stats.requests for stats in self.stats.values()),
            "errors": sum(sum(stats.errors.values()) for stats in self.stats.values()),
        }


def bench_load(
    *,
    url: str,
    users: int,
    seconds: float,
    docs: Path,
    questions: Path,
    engine_url: str = "",
    mix: dict[str, float] = MIX,
    think_seconds: tuple[float, float] = THINK_SECONDS,
    spawn_rate: float = SPAWN_RATE,
    seed: int = 11,
    on_seed_progress: Callable[[int, int], None] | None = None,
    on_second: Callable[[int, dict[str, int]], None] | None = None,
) -> dict:
    """`users` virtual users against the server at `url` for `seconds`, after seeding a fresh
    collection from `docs`; queries are the questions of `questions`. Users start `spawn_rate` a
    second (all at once when 0); the clock runs from the first one's start. `engine_url` (an engine
    the server uses) is sampled for its queue depth. `seed` fixes each user's sequence of kinds,
    queries and think times, so runs differ only by timing. Removes its fixture whatever happens."""
    url = url.rstrip("/")
    _check_server(url)
    queries = [question.question for question in load_questions(questions)]
    if not queries:
        raise LoadBenchmarkError(f"{questions} holds no questions")
    fixture = create_fixture(users=users, docs=docs, on_progress=on_seed_progress)
    run = LoadRun()
    try:
        _warm_up(url, key=fixture.keys[0], query=queries[0])
        started = time.monotonic()
        asyncio.run(
            _load(
                run,
                url=url,
                fixture=fixture,
                queries=queries,
                seconds=seconds,
                engine_url=engine_url,
                mix=mix,
                think_seconds=think_seconds,
                spawn_rate=spawn_rate,
                seed=seed,
                on_second=on_second,
            )
        )
        elapsed = time.monotonic() - started
        finish_jobs(run.uploaded)  # so that the clean-up does not delete documents being ingested
        report = _report(run, fixture=fixture, users=users, seconds=seconds, elapsed=elapsed)
        report["settings"] = {
            "url": url,
            "mix": mix,
            "think_seconds": list(think_seconds),
            "spawn_rate": spawn_rate,
            "queries": len(queries),
            "rate_limits": settings.KB_RATE_LIMITS,
        }
        return report
    finally:
        remove_fixture(fixture, uploaded=run.uploaded)


def _warm_up(url: str, *, key: str, query: str) -> None:
    """One search and one question before the clock starts, so that the server has loaded its
    models (the encoder, the fact-check's): a cold first request is not what the load measures."""
    headers = {"Authorization": f"Bearer {key}"}
    timeout = settings.KB_ANSWER_TIMEOUT + REQUEST_TIMEOUT_SECONDS
    for endpoint, body in (("search", {"query": query}), ("ask", {"question": query})):
        try:
            response = httpx.post(f"{url}/api/v1/{endpoint}", json=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as error:
            raise LoadBenchmarkError(f"the warm-up {endpoint} failed: {error}") from None
        if response.status_code != 200:
            raise LoadBenchmarkError(
                f"the warm-up {endpoint} answered {response.status_code}: {response.text[:300]}"
            )


def _check_server(url: str) -> None:
    try:
        httpx.get(f"{url}/healthz", timeout=10)
    except httpx.HTTPError as error:
        raise LoadBenchmarkError(
            f"no server answers at {url} ({error}): start the application with ./run, or pass --url"
        ) from None


# --- the fixture ---------------------------------------------------------------------------------


def create_fixture(
    *, users: int, docs: Path, on_progress: Callable[[int, int], None] | None = None
) -> LoadFixture:
    """A collection seeded from `docs` (returns once its jobs ended), readable and curated by a group
    of `users` new users, each with an API token limited to it. Names carry a fresh run id."""
    files = sorted(path for path in docs.iterdir() if path.is_file() and not path.name.startswith("."))
    if not files:
        raise LoadBenchmarkError(f"{docs} holds no documents to seed the collection with")
    run_id = uuid.uuid4().hex[:8]
    group = Group.objects.create(name=f"{NAME_PREFIX} {run_id}")
    collection = Collection.objects.create(
        name=f"{NAME_PREFIX} {run_id}", description="Made and removed by `manage.py bench load`."
    )
    collection.reader_groups.add(group)
    collection.curator_groups.add(group)
    members, keys = [], []
    for number in range(users):
        user = get_user_model()(username=f"load-{run_id}-{number:03d}")
        user.set_unusable_password()
        user.save()
        user.groups.add(group)
        members.append(user)
        keys.append(create_token(user=user, name="load benchmark", collections=[collection]).key)
    fixture = LoadFixture(collection, group, members, keys, seeded=[])
    try:
        for path in files:
            with path.open("rb") as content:
                result = upload_document(
                    collection=collection, name=path.name, content=content, actor_name="bench load"
                )
            fixture.seeded.append(result.version.pk)

        def progress(ended: int) -> None:
            if on_progress is not None:
                on_progress(ended, len(files))

        finish_jobs(fixture.seeded, on_progress=progress)
    except BaseException:
        remove_fixture(fixture)
        raise
    return fixture


def remove_fixture(fixture: LoadFixture, *, uploaded: list[int] = ()) -> None:
    """Delete the collection (its passages leave the index), the users with their tokens and
    questions, the answers only they asked for, the group, and the files of `uploaded` versions
    (generated content no other version shares)."""
    upload_files = list(DocumentVersion.objects.filter(pk__in=uploaded).values_list("file", "sha256"))
    answers = list(
        Answer.objects.filter(questions__user__in=fixture.users).values_list("pk", flat=True).distinct()
    )
    delete_collection(fixture.collection)
    get_user_model().objects.filter(pk__in=[user.pk for user in fixture.users]).delete()
    Answer.objects.filter(pk__in=answers, questions__isnull=True).delete()
    fixture.group.delete()
    for name, sha256 in upload_files:
        if name and not DocumentVersion.objects.filter(sha256=sha256).exists():
            default_storage.delete(name)


# --- the traffic ---------------------------------------------------------------------------------


async def _load(
    run: LoadRun,
    *,
    url: str,
    fixture: LoadFixture,
    queries: list[str],
    seconds: float,
    engine_url: str,
    mix: dict[str, float],
    think_seconds: tuple[float, float],
    spawn_rate: float,
    seed: int,
    on_second: Callable[[int, dict[str, int]], None] | None,
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + seconds
    limits = httpx.Limits(max_connections=2 * len(fixture.keys), max_keepalive_connections=len(fixture.keys))
    client = httpx.AsyncClient(base_url=f"{url}/api/v1", limits=limits, timeout=REQUEST_TIMEOUT_SECONDS)
    async with client:
        user_tasks = [
            asyncio.create_task(
                _virtual_user(
                    run,
                    client,
                    key=key,
                    collection=fixture.collection.name,
                    queries=queries,
                    mix=mix,
                    think_seconds=think_seconds,
                    rng=random.Random(seed + number),
                    start=started + (number / spawn_rate if spawn_rate else 0),
                    deadline=deadline,
                )
            )
            for number, key in enumerate(fixture.keys)
        ]
        watchers = [asyncio.create_task(_tick(run, started, deadline, on_second))]
        if engine_url:
            watchers.append(asyncio.create_task(_sample_engine(run, engine_url.rstrip("/"), deadline)))
        await asyncio.gather(*user_tasks)
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)


async def _virtual_user(
    run: LoadRun,
    client: httpx.AsyncClient,
    *,
    key: str,
    collection: str,
    queries: list[str],
    mix: dict[str, float],
    think_seconds: tuple[float, float],
    rng: random.Random,
    start: float,
    deadline: float,
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start - loop.time()))
    headers = {"Authorization": f"Bearer {key}"}
    kinds, weights = list(mix), list(mix.values())
    while True:
        await asyncio.sleep(rng.uniform(*think_seconds))
        if loop.time() >= deadline:
            return
        kind = rng.choices(kinds, weights)[0]
        if kind == "search":
            request = client.post("search", json={"query": rng.choice(queries)}, headers=headers)
        elif kind == "ask":
            timeout = settings.KB_ANSWER_TIMEOUT + REQUEST_TIMEOUT_SECONDS
            request = client.post(
                "ask", json={"question": rng.choice(queries)}, headers=headers, timeout=timeout
            )
        else:
            name, content = _generated_document(rng)
            files = {"file": (name, content, "text/markdown")}
            request = client.post("documents", data={"collection": collection}, files=files, headers=headers)
        await _measure(run, kind, request)


async def _measure(run: LoadRun, kind: str, request) -> None:
    stats = run.stats[kind]
    started = time.perf_counter()
    try:
        response = await request
    except httpx.TimeoutException as error:
        run.error(kind, "timeout", type(error).__name__)
        return
    except httpx.HTTPError as error:
        run.error(kind, "connection", f"{type(error).__name__}: {error}")
        return
    latency_ms = (time.perf_counter() - started) * 1000
    if response.status_code >= 300:
        run.error(kind, str(response.status_code), response.text[:200])
        return
    try:
        body = response.json()
        if kind == "ask":
            outcome = (body["answer"] or {}).get("outcome", "no answer")
        elif kind == "upload":
            run.uploaded.append(body["job"]["id"])
    except (ValueError, KeyError, TypeError, AttributeError):
        run.error(kind, "invalid_response", response.text[:200])
        return
    stats.latencies_ms.append(latency_ms)
    if kind == "ask":
        stats.outcomes[outcome] += 1
        stats.cache_hits += bool(body.get("cache_hit"))


def _generated_document(rng: random.Random) -> tuple[str, bytes]:
    """A small Markdown note of unique content, so that every upload is a new document to ingest."""
    marker = uuid.UUID(int=rng.getrandbits(128)).hex
    words = [
        "".join(rng.choice("bcdfghjklmnprstvwz") + rng.choice("aeiou") for _ in range(rng.randint(2, 4)))
        for _ in range(120)
    ]
    sentences = [" ".join(words[start : start + 12]).capitalize() + "." for start in range(0, 120, 12)]
    text = f"# Load note {marker}\n\nReference {marker}.\n\n" + " ".join(sentences) + "\n"
    return f"load-note-{marker}.md", text.encode()


async def _tick(run: LoadRun, started: float, deadline: float, on_second) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        await asyncio.sleep(min(1, deadline - loop.time()))
        if on_second is not None:
            on_second(round(min(loop.time(), deadline) - started), run.totals())


async def _sample_engine(run: LoadRun, engine_url: str, deadline: float) -> None:
    """The engine's gauges and counters (lines without labels of its Prometheus /metrics) about
    every ENGINE_SAMPLE_SECONDS; an engine without /metrics just leaves no samples."""
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=5) as client:
        while loop.time() < deadline:
            try:
                response = await client.get(f"{engine_url}/metrics")
                if response.status_code == 200:
                    run.engine_samples.append(_unlabelled_metrics(response.text))
            except httpx.HTTPError:
                pass
            await asyncio.sleep(ENGINE_SAMPLE_SECONDS)


def _unlabelled_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if line and not line.startswith("#") and "{" not in name:
            try:
                values[name] = float(value)
            except ValueError:
                continue
    return values


# --- the report ----------------------------------------------------------------------------------


def _report(run: LoadRun, *, fixture: LoadFixture, users: int, seconds: float, elapsed: float) -> dict:
    seeded = DocumentVersion.objects.filter(pk__in=fixture.seeded)
    kinds = {}
    for kind, stats in run.stats.items():
        kinds[kind] = {
            "requests": stats.requests,
            "requests_per_s": round(stats.requests / seconds, 2),
            "errors": dict(sorted(stats.errors.items())),
            "latency_ms": latency_summary(stats.latencies_ms),
        }
    ask = run.stats["ask"]
    kinds["ask"]["outcomes"] = dict(sorted(ask.outcomes.items()))
    kinds["ask"]["answers_without_engine"] = ask.outcomes.get(Answer.Outcome.ENGINE_UNAVAILABLE, 0)
    kinds["ask"]["cache_hits"] = ask.cache_hits
    totals = run.totals()
    search_p95 = kinds["search"]["latency_ms"]["p95"]
    return {
        "users": users,
        "seconds": seconds,
        "elapsed_seconds": round(elapsed, 1),
        "seeded_documents": seeded.count(),
        "seeded_chunks": sum(seeded.values_list("chunks_total", flat=True)),
        "seed_failures": seeded.filter(job_state=DocumentVersion.JobState.FAILED).count(),
        "requests": totals["requests"],
        "requests_per_s": round(totals["requests"] / seconds, 2),
        "errors": totals["errors"],
        **kinds,
        "first_errors": run.first_errors,
        "engine": engine_summary(run.engine_samples),
        "targets": {
            "zero_errors": totals["errors"] == 0,
            f"search_p95_under_{SEARCH_P95_TARGET_MS}_ms": search_p95 is not None
            and search_p95 < SEARCH_P95_TARGET_MS,
        },
    }


def latency_summary(values: list[float]) -> dict:
    """p50, p95, p99 and the maximum in whole ms (None for no values)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": round(p50), "p95": round(p95), "p99": round(p99), "max": round(max(values))}


def engine_summary(samples: list[dict[str, float]]) -> dict | None:
    """How busy the engine was: queue depth, sequences in the batch, share of samples with a full
    batch, requests it turned away and tokens it generated during the run."""
    if not samples:
        return None
    queue = [sample.get("kb_engine_queue_depth", 0) for sample in samples]
    active = [sample.get("kb_engine_active_sequences", 0) for sample in samples]
    max_batch = samples[-1].get("kb_engine_max_batch")
    full = bool(max_batch)

    def grew(name: str) -> int | None:
        if name not in samples[0] or name not in samples[-1]:
            return None
        return round(samples[-1][name] - samples[0][name])

    return {
        "samples": len(samples),
        "max_queue_depth": round(max(queue)),
        "mean_queue_depth": round(sum(queue) / len(queue), 1),
        "max_active_sequences": round(max(active)),
        "mean_active_sequences": round(sum(active) / len(active), 1),
        "max_batch": round(max_batch) if max_batch is not None else None,
        "full_batch_share": round(sum(n >= max_batch for n in active) / len(active), 2) if full else None,
        "rejected_requests": grew("kb_engine_requests_rejected_total"),
        "generated_tokens": grew("kb_engine_generated_tokens_total"),
    }
