"""The API as deployed: uvicorn streaming server-sent events as the engine writes, and batches
answered by a real Celery worker."""

import json
import threading
import time

import httpx
import pytest
from django.contrib.auth.models import Group, User

from kb.models import AskBatch, Collection
from kb.services.tokens import create_token
from tests.conftest import SMALL_ANSWER_ENVIRONMENT, WorkerProcess
from tests.test_search_access import ingest

pytestmark = pytest.mark.django_db(transaction=True)

LEAVE = (
    b"# Annual leave\n\nEmployees may carry over five days of annual leave into the next year. "
    b"Leave requests are approved by the line manager.\n"
)


@pytest.fixture
def token():
    hr = Collection.objects.create(name="HR")
    readers = Group.objects.create(name="staff")
    hr.reader_groups.add(readers)
    alice = User.objects.create_user("alice", password="pw-alice-123")
    alice.groups.add(readers)
    ingest(hr, "leave.md", LEAVE)
    return create_token(user=alice, name="test").key


def events(response) -> list[tuple[str, dict, float]]:
    """(event, data, seconds since the request) for each server-sent event, as it arrives."""
    started, received, name = time.monotonic(), [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            received.append((name, json.loads(line.removeprefix("data: ")), time.monotonic() - started))
    return received


def test_ask_streams_tokens_as_they_are_written_then_the_answer(web_server, token):
    headers = {"Authorization": f"Bearer {token}"}
    body = {"question": "Who approves leave requests?", "stream": True}
    with httpx.stream(
        "POST", f"{web_server}/api/v1/ask", json=body, headers=headers, timeout=120
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = events(response)
    names = [name for name, _, _ in received]
    assert names[-1] == "answer" and set(names[:-1]) == {"token"} and len(names) > 3
    written = "".join(data["text"] for name, data, _ in received if name == "token")
    answer = received[-1][1]
    assert answer["question"] == "Who approves leave requests?" and written
    assert answer["answer"]["citations"] and answer["answer"]["sentences"]
    # Streamed, not buffered: the first token came well before the checked answer.
    first_token_at, answer_at = received[0][2], received[-1][2]
    assert answer_at - first_token_at > 0.2
    bad = httpx.post(f"{web_server}/api/v1/ask", json={"question": "", "stream": True}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"


def test_an_answer_holds_no_database_connection_while_the_engine_writes(web_server, token):
    """The test server's pool has two connections (conftest): were the streaming request and its
    answer to keep theirs while the engine writes, a search sent meanwhile would wait for the
    answer to end."""
    headers = {"Authorization": f"Bearer {token}"}
    body = {"question": "Who approves leave requests?", "stream": True}
    searched_at = []

    def search():
        response = httpx.post(f"{web_server}/api/v1/search", json={"query": "annual leave"}, headers=headers)
        searched_at.append((response.status_code, time.monotonic()))

    searching = threading.Thread(target=search)
    with httpx.stream(
        "POST", f"{web_server}/api/v1/ask", json=body, headers=headers, timeout=120
    ) as response:
        for line in response.iter_lines():
            if line == "event: token" and searching.ident is None:
                searching.start()
            if line == "event: answer":
                answered_at = time.monotonic()
    searching.join(timeout=60)
    [(status, finished_at)] = searched_at
    assert status == 200 and finished_at < answered_at


def test_a_batch_is_answered_by_the_worker(web_server, token, celery_worker, engine_url):
    celery_worker.stop()  # the session's worker knows no engine; this one does
    worker = WorkerProcess(
        "batch-test@localhost",
        ENGINE_URLS=engine_url,
        **SMALL_ANSWER_ENVIRONMENT,
    )
    worker.start()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        questions = ["Who approves leave requests?", "How many days of annual leave carry over?"]
        submitted = httpx.post(f"{web_server}/api/v1/batches", json={"questions": questions}, headers=headers)
        assert submitted.status_code == 202
        url = f"{web_server}/api/v1/batches/{submitted.json()['id']}"
        deadline = time.monotonic() + 120
        while (batch := httpx.get(url, headers=headers).json())["state"] != "done":
            assert time.monotonic() < deadline, batch
            time.sleep(0.5)
        assert batch["done"] == batch["total"] == 2
        assert [item["result"]["question"] for item in batch["items"]] == questions
        assert all(item["result"]["answer"]["outcome"] != "engine_unavailable" for item in batch["items"])
        assert AskBatch.objects.get().state == AskBatch.State.DONE
    finally:
        worker.stop()
