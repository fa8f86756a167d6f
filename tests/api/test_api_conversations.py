"""Conversations through the API, every response checked against the OpenAPI schema: started,
listed, renamed and deleted by their user only; follow-ups asked in them are rewritten, streamed
with a `search` event, and listed by thread."""

import pytest

from kb.models import AuditEvent, Conversation, Question
from tests.api.test_api import org  # noqa: F401  (fixture)
from tests.test_permission_matrix import body as streamed

pytestmark = pytest.mark.django_db

FIRST = "How many days of annual leave can employees carry over?"


def test_a_thread_is_started_asked_in_listed_renamed_and_deleted(api, org, engine, settings):  # noqa: F811
    settings.KB_REWRITE = "rules"
    alice = api(org["alice"])
    created = alice.post("/api/v1/conversations", {"title": "Leave"}, format="json")
    assert created.status_code == 201
    thread = created.json()
    assert thread["title"] == "Leave" and thread["questions"] == 0

    first = alice.post("/api/v1/ask", {"question": FIRST, "conversation": thread["id"]}, format="json").json()
    assert first["conversation"] == thread["id"] and first["search_query"] == FIRST and first["rewrite"] == ""
    follow_up = alice.post(
        "/api/v1/ask", {"question": "And for contractors?", "conversation": thread["id"]}, format="json"
    ).json()
    assert follow_up["rewrite"] == "rules" and follow_up["question"] == "And for contractors?"
    assert (
        follow_up["search_query"]
        == "How many days of annual leave can employees carry over, for contractors?"
    )
    alone = alice.post("/api/v1/ask", {"question": "Who approves leave requests?"}, format="json").json()
    assert alone["conversation"] is None

    listed = alice.get("/api/v1/conversations").json()["results"]
    assert [(row["id"], row["questions"]) for row in listed] == [(thread["id"], 2)]
    in_thread = alice.get(f"/api/v1/questions?conversation={thread['id']}").json()["results"]
    assert [row["question"] for row in in_thread] == ["And for contractors?", FIRST]

    renamed = alice.patch(f"/api/v1/conversations/{thread['id']}", {"title": "Carry-over"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["title"] == "Carry-over"
    assert (
        alice.patch(f"/api/v1/conversations/{thread['id']}", {"title": " "}, format="json").status_code == 400
    )
    assert alice.delete(f"/api/v1/conversations/{thread['id']}").status_code == 204
    assert not Conversation.objects.exists() and list(Question.objects.values_list("text", flat=True)) == [
        "Who approves leave requests?"
    ]
    assert AuditEvent.objects.filter(action="conversation_deleted", actor=org["alice"]).exists()


def test_another_users_thread_is_not_found_anywhere(api, org):  # noqa: F811
    thread = Conversation.objects.create(user=org["alice"], title="Alice's questions")
    bob = api(org["bob"])
    url = f"/api/v1/conversations/{thread.pk}"
    assert bob.get(url).status_code == 404
    assert bob.patch(url, {"title": "mine"}, format="json").status_code == 404
    assert bob.delete(url).status_code == 404
    response = bob.post("/api/v1/ask", {"question": "And?", "conversation": thread.pk}, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert bob.get("/api/v1/conversations").json()["results"] == []
    assert bob.get(f"/api/v1/questions?conversation={thread.pk}").json()["results"] == []
    assert Conversation.objects.get().title == "Alice's questions"


def test_malformed_conversation_calls_are_refused_with_a_reason(api, org):  # noqa: F811
    alice = api(org["alice"])
    for body in ({}, {"title": ""}, {"title": "x" * 201}, {"title": ["a"]}):
        response = alice.post("/api/v1/conversations", body, format="json")
        assert response.status_code == 400, body
    response = alice.post("/api/v1/ask", {"question": "Hello?", "conversation": "first"}, format="json")
    assert response.status_code == 400 and "conversation" in response.json()["error"]["fields"]
    assert alice.get("/api/v1/questions?conversation=first").status_code == 400
    assert alice.put("/api/v1/conversations/1", {"title": "x"}, format="json").status_code == 405


def test_a_read_only_token_asks_in_threads_but_does_not_rename_or_delete_them(api, org):  # noqa: F811
    reader = api(org["alice"], read_only=True)
    thread = reader.post("/api/v1/conversations", {"title": "Leave"}, format="json").json()
    url = f"/api/v1/conversations/{thread['id']}"
    assert reader.patch(url, {"title": "Other"}, format="json").status_code == 403
    assert reader.delete(url).status_code == 403
    assert Conversation.objects.get().title == "Leave"


@pytest.mark.django_db(transaction=True)  # the streamed answer is written by a thread of its own
def test_a_streamed_follow_up_announces_what_it_searches_for(api, org, engine, settings):  # noqa: F811
    settings.KB_REWRITE = "rules"
    alice = api(org["alice"])
    thread = Conversation.objects.create(user=org["alice"], title="Leave")
    Question.objects.create(user=org["alice"], conversation=thread, text=FIRST)
    response = alice.post(
        "/api/v1/ask",
        {"question": "And for contractors?", "conversation": thread.pk, "stream": True},
        format="json",
    )
    events = streamed(response)
    search = events.index("event: search\ndata: ")
    assert search < events.index("event: answer")
    assert "carry over, for contractors?" in events[search : events.index("\n\n", search)]
