"""Conversation threads through the real pipeline: follow-ups rewritten by the real engine
(SmolLM2) or by the rules, searched as rewritten, kept private to their user, bounded however long
they grow; the staff pages that list, rename and delete them."""

import httpx
import pytest
from django.contrib.auth.models import Group, User

from kb.answering.rewrite import accept
from kb.models import Answer, AuditEvent, Collection, Conversation, Question
from kb.services.answers import ask
from kb.services.conversations import (
    InvalidConversation,
    earlier_questions,
    rename_conversation,
    standalone,
    start_conversation,
    title_for,
)
from retrieval.search import InvalidQuery
from tests.test_permission_matrix import body as streamed
from tests.test_search_access import ingest

pytestmark = pytest.mark.django_db

Rewrite = Question.Rewrite
LEAVE = (
    b"# Annual leave\n\nEmployees may carry over five days of annual leave into the next year. "
    b"Contractors may carry over no days of leave. Leave requests are approved by the line manager.\n"
)
PAYROLL = b"# Payroll\n\nSalaries are paid on the 25th of each month. Contractors invoice monthly.\n"
FIRST = "How many days of annual leave can employees carry over?"


@pytest.fixture
def people():
    hr, finance = Collection.objects.create(name="HR"), Collection.objects.create(name="Finance")
    staff, accountants = Group.objects.create(name="staff"), Group.objects.create(name="accountants")
    hr.reader_groups.add(staff)
    finance.reader_groups.add(accountants)
    alice = User.objects.create_user("alice", password="pw-alice-123")
    alice.groups.add(staff, accountants)
    bob = User.objects.create_user("bob", password="pw-bob-123")
    bob.groups.add(staff)
    ingest(hr, "leave.md", LEAVE)
    ingest(finance, "payroll.md", PAYROLL)
    return {"alice": alice, "bob": bob}


@pytest.fixture
def thread(people):
    """alice's thread with one question asked in it (stored as ask() stores it)."""
    conversation = start_conversation(user=people["alice"], title=title_for(FIRST))
    Question.objects.create(user=people["alice"], conversation=conversation, text=FIRST, answer=refusal())
    return conversation


def refusal() -> Answer:
    return Answer.objects.create(outcome=Answer.Outcome.NOT_FOUND, text="Not in the documents.")


def test_a_follow_up_is_searched_and_answered_as_the_engines_rewrite_or_the_rules(engine, people, thread):
    asked = ask(user=people["alice"], question="And for contractors?", conversation=thread)
    assert asked.conversation == thread and asked.text == "And for contractors?"
    assert asked.rewrite in (Rewrite.ENGINE, Rewrite.RULES)
    if asked.rewrite == Rewrite.ENGINE:  # SmolLM2 is small: its rewrite stands only when it passes
        assert accept(asked.search_query, asked.text, [FIRST]) == asked.search_query
    else:
        assert (
            asked.search_query == "How many days of annual leave can employees carry over, for contractors?"
        )
    searched = asked.searched.casefold()
    assert "contractors" in searched and "leave" in searched
    # Retrieval used the rewrite: "contractors" alone would find the payroll document first.
    assert asked.answer.outcome in (Answer.Outcome.ANSWERED, Answer.Outcome.NOT_FOUND)
    if asked.answer.outcome == Answer.Outcome.NOT_FOUND:
        assert asked.answer.detail["closest_sources"][0]["title"] == "Annual leave"
    else:
        assert "Annual leave" in {citation.title for citation in asked.answer.citations.all()}


def test_the_engines_rewrite_is_shown_before_the_search(engine, people, thread, settings):
    settings.KB_REWRITE = "rules"
    shown = []
    asked = ask(
        user=people["alice"], question="What about contractors?", conversation=thread, on_search=shown.append
    )
    assert (
        shown
        == [asked.search_query]
        == ["How many days of annual leave can employees carry over, contractors?"]
    )


def test_an_engine_that_is_down_or_writes_nothing_usable_leaves_the_rules(people, thread, settings, engine):
    settings.ENGINE_URLS = ["http://127.0.0.1:9"]  # nothing listens on the discard port
    down = standalone(thread, "And for contractors?", language="en")
    assert (down.text, down.rewrite) == (
        "How many days of annual leave can employees carry over, for contractors?",
        Rewrite.RULES,
    )
    # One token is never a faithful rewrite: the real engine's reply is turned down.
    settings.ENGINE_URLS, settings.KB_REWRITE_MAX_TOKENS = [engine], 1
    truncated = standalone(thread, "And for contractors?", language="en")
    assert truncated.rewrite == Rewrite.RULES and truncated.text == down.text


def test_rewrites_ask_the_engine_for_the_rewrite_model(people, thread, settings, engine):
    def finished_requests() -> float:
        lines = httpx.get(f"{engine}/metrics", timeout=5.0).text.splitlines()
        finished = [line for line in lines if line.startswith("kb_engine_requests_finished")]
        return sum(float(line.split()[-1]) for line in finished)

    before = finished_requests()
    settings.KB_REWRITE_MODEL = "qwen2.5-coder-0.5b-instruct"  # the test engine serves SmolLM2 only: 404
    assert standalone(thread, "And for contractors?", language="en").rewrite == Rewrite.RULES
    assert finished_requests() == before
    settings.KB_REWRITE_MODEL = settings.KB_ENGINE_MODEL
    standalone(thread, "And for contractors?", language="en")
    assert finished_requests() == before + 1


def test_a_standalone_question_or_a_first_one_is_searched_as_asked(people, thread, settings):
    settings.KB_REWRITE = "rules"
    assert standalone(thread, "When are salaries paid?", language="en").rewrite == Rewrite.NONE
    assert standalone(None, "And for contractors?", language="en").text == "And for contractors?"
    settings.KB_REWRITE = "off"
    assert standalone(thread, "And for contractors?", language="en").rewrite == Rewrite.NONE


def test_a_follow_up_may_switch_language_or_collections(people, thread, settings, engine):
    settings.KB_REWRITE = "rules"
    chinese = ask(user=people["alice"], question="那承包商呢？", conversation=thread)
    assert chinese.language == "zh" and chinese.answer.language == "zh"
    assert chinese.search_query.endswith("，承包商呢?")  # the question is NFKC-normalised
    finance = ask(
        user=people["alice"],
        question="And when are salaries paid?",
        conversation=thread,
        collections=["Finance"],
    )
    assert [collection.name for collection in finance.collections.all()] == ["Finance"]
    assert list(thread.questions.order_by("created_at").values_list("text", flat=True)) == [
        FIRST,
        "那承包商呢?",
        "And when are salaries paid?",
    ]


def test_nobody_asks_in_or_sees_another_users_thread(people, thread, client):
    with pytest.raises(InvalidQuery, match="no such conversation"):
        ask(user=people["bob"], question="And for contractors?", conversation=thread)
    client.force_login(people["bob"])
    assert client.get(f"/conversations/{thread.pk}").status_code == 404
    assert client.post(f"/conversations/{thread.pk}/rename", {"title": "mine"}).status_code == 404
    assert client.post(f"/conversations/{thread.pk}/delete").status_code == 404
    response = client.post("/ask", {"question": "And?", "conversation": thread.pk, "collections": ["HR"]})
    assert response.status_code == 404 and response.json()["error"]
    assert (
        client.post("/ask", {"question": "And?", "conversation": "x1", "collections": ["HR"]}).status_code
        == 404
    )
    assert thread.title.encode() not in client.get("/").content
    assert Conversation.objects.get(pk=thread.pk).title == thread.title


def test_a_thread_hundreds_of_questions_long_costs_what_a_short_one_does(
    people, thread, settings, client, django_assert_max_num_queries
):
    answer = refusal()
    Question.objects.bulk_create(
        Question(user=people["alice"], conversation=thread, text=f"Question {number}?", answer=answer)
        for number in range(400)
    )
    settings.KB_REWRITE = "rules"
    with django_assert_max_num_queries(1):
        earlier = earlier_questions(thread)
    assert len(earlier) == settings.KB_REWRITE_TURNS
    client.force_login(people["alice"])
    page = client.get(f"/conversations/{thread.pk}").content.decode()
    assert page.count('class="card answer-card turn"') == 20
    assert "381 earlier questions are not shown." in page


def test_threads_are_titled_renamed_and_deleted_with_their_questions(people, thread, client):
    assert thread.title == FIRST
    assert len(title_for("word " * 100)) <= 80
    rename_conversation(thread, title="  Leave   for contractors ")
    assert Conversation.objects.get(pk=thread.pk).title == "Leave for contractors"
    for title in ("", "   ", "x" * 201, None):
        with pytest.raises(InvalidConversation):
            rename_conversation(thread, title=title)

    client.force_login(people["alice"])
    response = client.post(f"/conversations/{thread.pk}/rename", {"title": "Carry-over"})
    assert response.status_code == 302 and Conversation.objects.get(pk=thread.pk).title == "Carry-over"
    assert client.post(f"/conversations/{thread.pk}/rename", {"title": " "}).status_code == 400
    listed = client.get("/").content.decode()
    assert "Carry-over" in listed and "1 question" in listed

    response = client.post(f"/conversations/{thread.pk}/delete")
    assert response.status_code == 302 and response.url == "/"
    assert not Conversation.objects.exists() and not Question.objects.exists()
    event = AuditEvent.objects.get(action="conversation_deleted")
    assert (event.actor, event.object_repr, event.detail) == (people["alice"], "Carry-over", {"questions": 1})
    with pytest.raises(InvalidConversation):
        start_conversation(user=people["alice"], title="")


@pytest.mark.django_db(transaction=True)  # the streamed answer is written by a thread of its own
def test_a_question_asked_on_the_page_starts_a_thread_and_its_old_address_opens_it(people, client, engine):
    client.force_login(people["alice"])
    response = client.post("/ask", {"question": FIRST, "collections": ["HR", "Finance"]})
    assert "event: answer" in streamed(response)
    conversation = Conversation.objects.get()
    question = conversation.questions.get()
    assert conversation.user == people["alice"] and conversation.title == FIRST
    response = client.get(f"/questions/{question.pk}")
    assert (
        response.status_code == 302
        and response.url == f"/conversations/{conversation.pk}#question-{question.pk}"
    )
    page = client.get(f"/conversations/{conversation.pk}").content.decode()
    assert f'id="question-{question.pk}"' in page and f'value="{conversation.pk}"' in page
