"""Questions through the API with the real engine (SmolLM2) and fact-checker: answers with their
citations and verdicts, feedback, history, batches; nobody sees another user's questions."""

from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from kb.models import AskBatch, Feedback
from kb.services.batches import answer_batch, requeue_stalled_batches, stalled_batches
from kb.services.job_locks import ANSWER_BATCH
from kb.tasks import answer_batch as answer_batch_task
from tests.api.test_api import org  # noqa: F401  (fixture)
from tests.conftest import database_url, purge_task_queues

pytestmark = pytest.mark.django_db

QUESTION = "How many days of annual leave can employees carry over?"


def test_ask_returns_the_answer_with_verdicts_and_exact_cited_passages(api, org, engine, settings):  # noqa: F811
    # Whatever SmolLM2 writes, something is cited (the question holds 1 of its 3 terms in the document).
    settings.KB_FACTCHECK_THRESHOLD, settings.KB_FACTCHECK_MIN_QUESTION_COVERAGE = 0.01, 0.3
    alice = api(org["alice"])
    response = alice.post("/api/v1/ask", {"question": "Who approves leave requests?"}, format="json")
    assert response.status_code == 200
    asked = response.json()
    answer = asked["answer"]
    assert asked["collections"] == ["HR"] and asked["feedback"] is None and not asked["cache_hit"]
    assert answer["outcome"] == "answered" and answer["citations"] and answer["sentences"]
    parsed = org["leave"].current_version.parsed_text
    for citation in answer["citations"]:
        assert citation["collection"] == "HR" and citation["title"] == "Annual leave"
        assert (
            citation["passage"]
            and citation["passage"] == parsed[citation["char_start"] : citation["char_end"]]
        )
    numbers = {citation["number"] for citation in answer["citations"]}
    for sentence in answer["sentences"]:
        assert sentence["verdict"] == "supported" and set(sentence["citations"]) <= numbers
        assert f"[{sentence['citations'][0]}]" in answer["text"]
    again = alice.post("/api/v1/ask", {"question": "Who approves leave requests?"}, format="json").json()
    assert again["cache_hit"] and again["answer"] == answer and again["id"] != asked["id"]


def test_a_refusal_lists_the_closest_readable_passages(api, org, engine):  # noqa: F811
    response = api(org["alice"]).post("/api/v1/ask", {"question": "What is the dress code?"}, format="json")
    answer = response.json()["answer"]
    assert answer["outcome"] == "not_found" and answer["citations"] == [] and answer["sentences"] == []
    assert all(source["title"] == "Annual leave" for source in answer["closest_sources"])


def test_questions_the_caller_may_not_ask_get_clear_errors(api, org, engine):  # noqa: F811
    alice = api(org["alice"])
    for body, code in [
        ({"question": ""}, "invalid_request"),
        ({"question": "bonus\x00dates"}, "invalid_request"),
        ({"question": "bonus\x1bdates"}, "invalid_query"),
        ({"question": "When are salaries paid?", "collections": ["Finance"]}, "unknown_collection"),
        ({"question": "When?", "collections": []}, "invalid_request"),
        ({"question": "x" * 20_000}, "invalid_query"),
        ({"question": QUESTION, "stream": "perhaps"}, "invalid_request"),
    ]:
        response = alice.post("/api/v1/ask", body, format="json")
        assert response.status_code == 400 and response.json()["error"]["code"] == code, body


def test_feedback_and_history_belong_to_the_asker_alone(api, org, engine):  # noqa: F811
    alice, bob = api(org["alice"]), api(org["bob"])
    asked = alice.post("/api/v1/ask", {"question": QUESTION}, format="json").json()
    feedback_url = f"/api/v1/questions/{asked['id']}/feedback"
    response = alice.post(feedback_url, {"rating": "down", "comment": "It is six days."}, format="json")
    assert response.status_code == 200 and response.json()["rating"] == "down"
    response = alice.post(feedback_url, {"rating": "up"}, format="json")  # changed her mind
    assert response.status_code == 200
    assert Feedback.objects.get().rating == "up" and Feedback.objects.get().comment == ""
    response = alice.post(feedback_url, {"rating": "meh"}, format="json")
    assert response.status_code == 400 and "rating" in response.json()["error"]["fields"]
    history = alice.get("/api/v1/questions").json()
    assert history["count"] == 1 and history["results"][0]["feedback"]["rating"] == "up"
    assert alice.get(f"/api/v1/questions/{asked['id']}").json()["id"] == asked["id"]
    assert bob.get("/api/v1/questions").json()["count"] == 0
    assert bob.get(f"/api/v1/questions/{asked['id']}").status_code == 404
    assert bob.post(feedback_url, {"rating": "down"}, format="json").status_code == 404
    assert Feedback.objects.get().rating == "up"


def test_a_batch_is_checked_on_submission_and_answered_item_by_item(api, org, engine):  # noqa: F811
    alice = api(org["alice"])
    response = alice.post("/api/v1/batches", {"questions": [QUESTION, "   "]}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_query"
    assert "question 2" in response.json()["error"]["message"]
    response = alice.post("/api/v1/batches", {"questions": [QUESTION] * 101}, format="json")
    assert response.status_code == 400 and "questions" in response.json()["error"]["fields"]
    response = alice.post(
        "/api/v1/batches", {"questions": ["Pay day?"], "collections": ["Finance"]}, format="json"
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_collection"
    assert not AskBatch.objects.exists()

    response = alice.post(
        "/api/v1/batches", {"questions": [QUESTION, "Who approves leave requests?"]}, format="json"
    )
    assert response.status_code == 202
    batch = response.json()
    assert (batch["state"], batch["done"], batch["total"]) == ("queued", 0, 2)
    assert [item["result"] for item in batch["items"]] == [None, None]
    answer_batch(batch["id"])  # what the worker runs
    finished = alice.get(f"/api/v1/batches/{batch['id']}").json()
    assert (finished["state"], finished["done"]) == ("done", 2)
    assert [item["result"]["question"] for item in finished["items"]] == [
        QUESTION,
        "Who approves leave requests?",
    ]
    assert all(item["result"]["answer"]["outcome"] in ("answered", "not_found") for item in finished["items"])
    assert api(org["bob"]).get(f"/api/v1/batches/{batch['id']}").status_code == 404


def test_stalled_batches_are_running_ones_no_worker_holds_and_queued_ones_waiting_too_long(
    api,
    org,  # noqa: F811
    settings,
    idle_queues,
):
    def batch(state: str, waited: float = 0) -> int:
        response = api(org["alice"]).post("/api/v1/batches", {"questions": [QUESTION]}, format="json")
        updated_at = timezone.now() - timedelta(seconds=waited)
        AskBatch.objects.filter(pk=response.json()["id"]).update(state=state, updated_at=updated_at)
        return response.json()["id"]

    dead = batch(AskBatch.State.RUNNING)
    alive = batch(AskBatch.State.RUNNING)
    waiting = batch(AskBatch.State.QUEUED)
    lost = batch(AskBatch.State.QUEUED, waited=settings.KB_QUEUED_JOB_TIMEOUT + 60)
    batch(AskBatch.State.DONE)
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as other_worker:
        other_worker.execute("SELECT pg_advisory_lock(%s, %s)", [ANSWER_BATCH, alive])
        # Behind a backlog of the batch queue its message is likely still there: not lost yet.
        answer_batch_task.delay(0)
        assert stalled_batches() == [dead]
        purge_task_queues()
        assert stalled_batches() == [dead, lost]
        answer_batch(alive)  # a second delivery of the task the other worker is running
        assert AskBatch.objects.get(pk=alive).done == 0
        assert requeue_stalled_batches() == [dead, lost]
        assert AskBatch.objects.get(pk=dead).state == AskBatch.State.QUEUED
        assert stalled_batches() == []  # queued again just now: no second message
    assert waiting not in stalled_batches()
