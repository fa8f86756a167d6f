"""Fault recovery of the whole stack, through its REST API: PostgreSQL restarted mid-ingest, the
engine killed mid-answer, Redis killed and restarted. Each time the stack recovers by itself, every
document is indexed exactly once (exact document, chunk and passage counts) and users get clear
answers meanwhile. (A Celery worker killed mid-job: tests/test_ingestion.py.)

One stack (tests/stacks.py) serves the three tests; each works in its own collection."""

import contextlib
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from kb.services.answers import MESSAGES
from kb.stack.postgres import LocalPostgres
from kb.stack.redis import LocalRedis
from tests.conftest import LENIENT_FACTCHECK
from tests.rest import ENDED, Api, assert_indexed_exactly_once, expected_chunks, heading_of, parsed
from tests.stacks import separate_stack

pytestmark = pytest.mark.slow

# About 20 chunks each: with small embedding batches a job runs for a few seconds, and each batch
# is a transaction of its own, so a fault lands between and inside them.
POSTGRES_DOCS = [
    "en_covid_020_Community_acquired_pneumonia_in_children_a_changin.md",
    "en_covid_064_Severe_Acute_Respiratory_Syndrome_Coronavirus_Viro.md",
    "en_covid_033_Population_Based_Pertussis_Incidence_and_Risk_Fact.md",
    "en_covid_086_Knowledge_Attitudes_and_Practices_KAP_related_to_t.md",
    "en_covid_010_Preparation_for_Possible_Sustained_Transmission_of.md",
    "en_wiki_Southern_California.md",
    "en_covid_078_A_mathematical_model_for_simulating_the_phase_base.md",
    "en_wiki_Normans.md",
]
REDIS_DOCS_BEFORE = [
    "en_covid_075_Respiratory_Viral_Infections_in_Exacerbation_of_Ch.md",
    "en_covid_084_Interferon_Induced_Transmembrane_Protein_3_Inhibit.md",
    "en_wiki_Super_Bowl_50.md",
]
REDIS_DOCS_DURING = ["en_wiki_Victoria_Australia.md", "en_wiki_Sky_United_Kingdom.md"]
REDIS_DOCS_AFTER = ["en_wiki_Huguenot.md"]
REDIS_QUESTION = "Which virus infections are found in exacerbations of chronic obstructive pulmonary disease?"
ENGINE_DOCS = ["en_wiki_Apollo_program.md", "en_wiki_Prime_number.md"]
QUESTION = "What were the astronauts wearing during the dual mission AS-278?"
# One SmolLM2 answers (at temperature 0) with a sentence the fact-check supports.
ANSWERABLE = (
    "What is the name of another algorithm useful for conveniently testing the primality of large numbers?"
)

STACK_SETTINGS = {
    "KB_EMBEDDING_BATCH": "4",
    # Jobs whose worker or Celery message was lost are found within seconds, not minutes.
    "KB_STALLED_CHECK_SECONDS": "2",
    "KB_QUEUED_JOB_TIMEOUT": "10",
    # Short answers from two short sources, cited whatever SmolLM2 writes about them.
    "KB_ANSWER_SOURCES": "2",
    "KB_ANSWER_SOURCE_CHARS": "300",
    "KB_ANSWER_MAX_TOKENS": "64",
    **LENIENT_FACTCHECK,
}


@pytest.fixture(scope="module")
def stack():
    with separate_stack(**STACK_SETTINGS) as stack:
        stack.start()
        stack.wait_healthy()
        yield stack


@pytest.fixture(scope="module")
def api(stack) -> Api:
    token = stack.manage("create_token", "admin", "--name", "fault tests").split()[-1]
    return Api(stack.url, token)


def create_collection(stack, name: str) -> int:
    """A collection only the administrator (a superuser) reads and curates."""
    rows = stack.sql(
        "INSERT INTO kb_collection (name, description, created_at) VALUES (%s, '', now()) RETURNING id", name
    )
    return rows[0][0]


def assert_each_document_is_found(api: Api, collection: str, names: list[str]) -> None:
    for name in names:
        response = api.search(heading_of(name), collection)
        assert response.status_code == 200, response.text
        titles = [result["document"]["title"] for result in response.json()["results"]]
        assert parsed(name).title in titles, (name, titles)


def job_states(stack, collection: str) -> list[tuple[str, int, int]]:
    return stack.sql(
        "SELECT v.job_state, v.chunks_done, v.chunks_total FROM kb_documentversion v"
        " JOIN kb_document d ON d.id = v.document_id JOIN kb_collection k ON k.id = d.collection_id"
        " WHERE k.name = %s",
        collection,
    )


def embedding(states) -> bool:
    return any(state == "embedding" and done > 0 for state, done, _ in states)


def wait_for_jobs(stack, collection: str, condition, timeout: float = 120) -> list[tuple[str, int, int]]:
    """The collection's job states (state, chunks done, chunks total) once they meet `condition`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = job_states(stack, collection)
        if condition(states):
            return states
        time.sleep(0.05)
    raise AssertionError(
        f"jobs of {collection} not as wanted within {timeout} s: {job_states(stack, collection)}"
    )


@contextlib.contextmanager
def supervision_paused(stack):
    """The supervisor stopped (SIGSTOP), so a service killed meanwhile stays down until it resumes."""
    supervisor = stack.pid("supervisor")
    os.kill(supervisor, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(supervisor, signal.SIGCONT)


def wait_for_new_pid(stack, name: str, old: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if (pid := stack.pid(name)) != old:
                return pid
        time.sleep(0.2)
    raise AssertionError(f"{name} was not restarted within {timeout} s:\n{stack.output()}")


def log_tail(stack, name: str, characters: int = 4000) -> str:
    """The end of a service's log (var/log/NAME.log), for failure messages."""
    return (stack.layout.log_dir / f"{name}.log").read_text(errors="replace")[-characters:]


def wait_for_batch(api: Api, batch_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = api.get(f"/batches/{batch_id}")
        if batch["state"] == "done":
            return batch
        time.sleep(0.5)
    raise AssertionError(f"batch {batch_id} not answered within {timeout} s: {batch}")


def health(stack) -> tuple[int, dict]:
    response = httpx.get(f"{stack.url}/healthz", timeout=30)
    return response.status_code, response.json()


def test_postgres_restarted_mid_ingest_loses_and_duplicates_nothing(stack, api):
    collection = "Postgres restart"
    create_collection(stack, collection)
    expected = expected_chunks(POSTGRES_DOCS)
    for name in POSTGRES_DOCS:
        response = api.upload(collection, name)
        assert response.status_code == 202, response.text
    before = wait_for_jobs(stack, collection, embedding)
    browser = httpx.Client(base_url=stack.url, timeout=30)
    csrf = browser.get("/accounts/login/").cookies["csrftoken"]
    postgres = LocalPostgres(stack.layout)
    postgres.stop()
    try:
        # Meanwhile the health check names the database, and the API and the pages answer at once
        # that it is unavailable for now.
        status, report = health(stack)
        assert status == 503 and "database" in report["down"], report
        response = api.client.get("/jobs")
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "database_unavailable"
        assert int(response.headers["Retry-After"]) > 0
        sign_in = {"username": "admin", "password": "whatever", "csrfmiddlewaretoken": csrf}
        page = browser.post("/accounts/login/", data=sign_in)
        assert page.status_code == 503 and "Retry-After" in page.headers, page.text
        assert "try again" in page.text
        time.sleep(2)  # the workers meet the outage
    finally:
        postgres.start()
    unfinished = [state for state, _, _ in before if state not in ENDED]
    assert len(unfinished) >= 2, before  # the restart did hit running and queued jobs

    api.wait_until_jobs_ended(collection, len(POSTGRES_DOCS))
    assert_indexed_exactly_once(stack.sql, api, collection, expected)
    assert_each_document_is_found(api, collection, POSTGRES_DOCS)
    assert "Retry in" in (stack.layout.log_dir / "worker.log").read_text()  # jobs were interrupted
    assert health(stack)[0] == 200


def streamed_events(response: httpx.Response):
    name = None
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            yield name, json.loads(line.removeprefix("data:"))


def test_engine_killed_mid_answer_gives_the_sources_and_answers_again_after_its_restart(stack, api):
    collection = "Engine restart"
    create_collection(stack, collection)
    expected = expected_chunks(ENGINE_DOCS)
    for name in ENGINE_DOCS:
        assert api.upload(collection, name).status_code == 202
    api.wait_until_jobs_ended(collection, len(ENGINE_DOCS))
    assert_indexed_exactly_once(stack.sql, api, collection, expected)
    titles = {parsed(name).title for name in ENGINE_DOCS}
    engine_pid = stack.pid("engine")
    unavailable = MESSAGES["engine_unavailable"]["en"]

    with supervision_paused(stack):
        tokens, final = [], None
        body = {"question": QUESTION, "collections": [collection], "stream": True}
        with api.client.stream("POST", "/ask", json=body) as response:
            assert response.status_code == 200
            for name, data in streamed_events(response):
                if name == "token":
                    if not tokens:
                        os.kill(engine_pid, signal.SIGKILL)  # the answer has begun
                    tokens.append(data["text"])
                else:
                    final = (name, data)
        assert tokens, final
        assert final[0] == "answer", final
        answer = final[1]["answer"]
        assert (answer["outcome"], answer["text"]) == ("engine_unavailable", unavailable)
        assert answer["citations"] == [] and answer["closest_sources"]
        assert {source["title"] for source in answer["closest_sources"]} <= titles

        # While the engine is down: the health check names it, search works, questions get the sources.
        status, report = health(stack)
        assert status == 503 and report["down"] == ["engine"], report
        searched = api.search("Apollo spacesuit", collection)
        assert searched.status_code == 200 and searched.json()["results"], searched.text
        assert searched.json()["results"][0]["document"]["title"] == parsed(ENGINE_DOCS[0]).title
        asked = api.ask(ANSWERABLE, collection)
        assert asked.status_code == 200, asked.text
        assert asked.json()["answer"]["outcome"] == "engine_unavailable"
        assert asked.json()["answer"]["closest_sources"]

    wait_for_new_pid(stack, "engine", engine_pid)
    report = stack.wait_healthy(timeout=60)
    assert report["engine"]["status"] == "up"
    assert "engine exited" in stack.output()
    asked = api.ask(ANSWERABLE, collection)
    assert asked.status_code == 200, asked.text
    answer = asked.json()["answer"]
    assert answer["outcome"] == "answered" and not asked.json()["cache_hit"], answer
    assert answer["citations"] and {citation["title"] for citation in answer["citations"]} <= titles
    assert_indexed_exactly_once(stack.sql, api, collection, expected)


def test_redis_killed_search_still_answers_and_every_upload_is_indexed_once(stack, api):
    collection = "Redis restart"
    create_collection(stack, collection)
    expected = expected_chunks(REDIS_DOCS_BEFORE + REDIS_DOCS_DURING + REDIS_DOCS_AFTER)
    for name in REDIS_DOCS_BEFORE:
        response = api.upload(collection, name)
        assert response.status_code == 202, response.text
    # One document is searchable already, another is being embedded.
    wait_for_jobs(stack, collection, lambda states: embedding(states) and "done" in [s[0] for s in states])
    redis_pid = stack.pid("redis")
    with supervision_paused(stack):
        os.kill(redis_pid, signal.SIGKILL)
        redis = LocalRedis(stack.layout)
        while redis.is_running():
            time.sleep(0.05)
        status, report = health(stack)
        # The worker answers pings through Redis, so it is unreachable too.
        assert status == 503 and report["down"] == ["redis", "worker"], report
        # Search does not need Redis: its cache is only a cache.
        searched = api.search("respiratory virus infections", collection)
        assert searched.status_code == 200, log_tail(stack, "web")
        assert searched.json()["results"]
        # Uploads meanwhile, at once as several clients would send them, and a batch of questions.
        with ThreadPoolExecutor(len(REDIS_DOCS_DURING)) as pool:
            responses = pool.map(lambda name: api.upload(collection, name), REDIS_DOCS_DURING)
            during = dict(zip(REDIS_DOCS_DURING, responses, strict=True))
        batch = api.client.post("/batches", json={"questions": [REDIS_QUESTION], "collections": [collection]})
        assert batch.status_code == 202, batch.text
        # Asking needs no Redis either: no cache, no limits, sensitive terms read from the table.
        asked = api.ask(REDIS_QUESTION, collection)
        assert asked.status_code == 200, log_tail(stack, "web")
        assert asked.json()["answer"]["outcome"] in ("answered", "not_found"), asked.text
        assert not asked.json()["cache_hit"]
    new_redis = wait_for_new_pid(stack, "redis", redis_pid)
    assert new_redis != redis_pid and "redis exited" in stack.output()
    stack.wait_healthy(timeout=60)

    # A client whose upload failed sends it again; one that was stored is not taken twice.
    for name in REDIS_DOCS_BEFORE + REDIS_DOCS_DURING:
        stored = stack.sql("SELECT count(*) FROM kb_documentversion WHERE original_name = %s", name)
        again = api.upload(collection, name)
        assert again.status_code in (200, 202), again.text
        assert again.json()["created"] == (stored == [(0,)]), (name, during.get(name), again.text)
    for name in REDIS_DOCS_AFTER:  # the web server queues jobs again
        assert api.upload(collection, name).status_code == 202, log_tail(stack, "web")
    try:
        api.wait_until_jobs_ended(collection, len(expected), timeout=90)
    except AssertionError as error:
        raise AssertionError(f"{error}\nworker log:\n{log_tail(stack, 'worker')}") from None
    assert_indexed_exactly_once(stack.sql, api, collection, expected)
    assert_each_document_is_found(api, collection, list(expected))
    # The batch's message never reached the broker: the stalled-job check sent it.
    answered = wait_for_batch(api, batch.json()["id"])
    assert (answered["done"], answered["total"]) == (1, 1), answered
    assert answered["items"][0]["result"] is not None, answered
    # An upload during the outage was accepted (its job queued once Redis was back) or refused
    # with a reason to send it again, not answered as an unexpected server error.
    for name, response in during.items():
        assert response.status_code in (202, 503), (name, response.status_code, response.text)
