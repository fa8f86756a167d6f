"""The permission matrix: every URL of the application, called by every kind of caller, against a
collection only the board may read. Nobody else may get its documents, passages, answers, jobs,
files or even its name; what they get is exactly what a missing object gives. A URL added to the
application without a row here fails `test_every_url_is_in_the_matrix`.
"""

import pytest
from asgiref.sync import async_to_sync
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from kb.models import (
    Answer,
    AnswerSentence,
    AskBatch,
    AskBatchItem,
    Citation,
    Collection,
    Conversation,
    Question,
)
from kb.services.tokens import create_token
from tests.test_search_access import ingest

pytestmark = pytest.mark.django_db(transaction=True)  # the streamed answer runs in its own thread

SECRET_WORD = "zephyrquartz"  # appears only in the board's collection: its name, title and text
BOARD_COLLECTION = f"Board {SECRET_WORD}"
SECRET = f"# Project {SECRET_WORD}\n\nThe {SECRET_WORD} merger closes in March.\n".encode()
PUBLIC = b"# Canteen\n\nThe canteen opens at noon.\n"

# Who may reach the board's objects through each URL: "board" (readers of the collection), "asker"
# (the board reader who asked the question), "curator" (the board's curator), "admin".
BOARD = {"board", "asker", "curator", "admin"}
ASKER = {"asker", "admin"}  # questions, feedback, citations are their asker's (admins see all, not via these)
SIGNED_IN = {"outsider", "board", "asker", "curator", "other_curator", "admin"}
# Pages and endpoints that hold nothing of any collection.
OPEN = {"login", "logout", "set_language", "healthz", "api:schema", "api:docs", None}
CURATORS = {"curator", "other_curator", "admin"}
ADMIN_MODELS = {  # who gets each console model page (no Django model permissions are granted here)
    "kb.Collection": CURATORS,
    "kb.Document": CURATORS,
    "kb.DocumentVersion": CURATORS,
    "kb.Chunk": CURATORS,
    "kb.AuditEvent": {"admin"},
    "kb.ApiToken": {"admin"},
    "auth.User": {"admin"},
    "auth.Group": {"admin"},
    "kb.SensitiveTerm": {"admin"},
    "kb.Answer": {"admin"},
    "kb.Question": {"admin"},
}


def url_names(patterns, namespace=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.app_name == "admin":
                continue  # model pages: ADMIN_MODELS
            yield from url_names(pattern.url_patterns, pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern):
            yield f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name


@pytest.fixture
def world(settings):
    settings.ENGINE_URLS = ["http://127.0.0.1:9"]  # no engine: answers are "engine unavailable", at once
    board_docs, canteen = (
        Collection.objects.create(name=BOARD_COLLECTION),
        Collection.objects.create(name="All"),
    )
    readers, curators, staff = (
        Group.objects.create(name=name) for name in ("board", "board-curators", "staff")
    )
    board_docs.reader_groups.add(readers)
    board_docs.curator_groups.add(curators)
    canteen.reader_groups.add(staff, readers)
    users = {
        "outsider": User.objects.create_user("outsider", password="pw-out-1234"),
        "board": User.objects.create_user("board", password="pw-board-1234"),
        "asker": User.objects.create_user("asker", password="pw-asker-1234"),
        "curator": User.objects.create_user("curator", password="pw-cur-1234", is_staff=True),
        "other_curator": User.objects.create_user("othercur", password="pw-oc-1234", is_staff=True),
        "admin": User.objects.create_superuser("root", password="pw-root-1234"),
    }
    users["outsider"].groups.add(staff)
    users["board"].groups.add(readers)
    users["asker"].groups.add(readers)
    users["curator"].groups.add(curators)
    other = Collection.objects.create(name="Other")
    other_curators = Group.objects.create(name="other-curators")
    other.curator_groups.add(other_curators)
    users["other_curator"].groups.add(other_curators)
    secret = ingest(board_docs, "plan.md", SECRET)
    ingest(canteen, "canteen.md", PUBLIC)
    chunk = secret.current_version.chunks.get()
    answer = Answer.objects.create(outcome="answered", text=f"The {SECRET_WORD} merger closes in March.[1]")
    citation = Citation.objects.create(
        answer=answer,
        number=1,
        chunk=chunk,
        version=chunk.version,
        document=secret,
        collection=board_docs,
        title=secret.title,
        char_start=chunk.char_start,
        char_end=chunk.char_end,
    )
    AnswerSentence.objects.create(
        answer=answer, ordinal=0, text="Ten in Paris.", verdict="unsupported", shown=False
    )
    question = Question.objects.create(user=users["asker"], text="When does it close?", answer=answer)
    question.collections.set([board_docs])
    batch = AskBatch.objects.create(user=users["asker"], collections=[board_docs.name], total=1, done=1)
    AskBatchItem.objects.create(batch=batch, ordinal=0, text="When does it close?", question=question)
    # The asker's thread: its title is their own words, which name the project.
    conversation = Conversation.objects.create(user=users["asker"], title=f"The {SECRET_WORD} merger")
    Question.objects.create(
        user=users["asker"], conversation=conversation, text="And the date?", answer=answer
    )
    objects = {
        "question": question.pk,
        "citation": citation.pk,
        "version": secret.current_version_id,
        "document": secret.pk,
        "answer": answer.pk,
        "batch": batch.pk,
        "conversation": conversation.pk,
    }
    return {"users": users, "objects": objects, "board_collection": BOARD_COLLECTION}


def calls(objects, collection):
    """name → [(method, url, data, who may)] for every URL of the application."""
    o = objects
    return {
        "ask": [("get", "/", None, BOARD)],
        "conversation": [("get", f"/conversations/{o['conversation']}", None, {"asker"})],
        "rename-conversation": [
            (
                "post",
                f"/conversations/{o['conversation']}/rename",
                {"title": f"{SECRET_WORD} plans"},
                {"asker"},
            )
        ],
        "delete-conversation": [("post", f"/conversations/{o['conversation']}/delete", None, {"asker"})],
        "question": [("get", f"/questions/{o['question']}", None, {"asker"})],
        "feedback": [("post", f"/questions/{o['question']}/feedback", {"rating": "down"}, {"asker"})],
        "ask-stream": [
            ("post", "/ask", {"question": "When does it close?", "collections": [collection]}, BOARD)
        ],
        "citation": [("get", f"/citations/{o['citation']}", None, {"asker"})],
        "original-file": [("get", f"/files/{o['version']}", None, BOARD)],
        "dashboard": [("get", "/admin/dashboard/", None, {"admin"})],
        "review-queue": [("get", "/admin/review/", None, {"curator", "admin"})],
        "review": [("get", f"/admin/review/{o['answer']}/", None, {"curator", "admin"})],
        "api:collections": [("get", "/api/v1/collections", None, BOARD)],
        "api:documents": [
            ("get", "/api/v1/documents", None, BOARD),
            ("post", "/api/v1/documents", {"collection": collection}, {"curator", "admin"}),
        ],
        "api:document": [
            ("get", f"/api/v1/documents/{o['document']}", None, BOARD),
            ("delete", f"/api/v1/documents/{o['document']}", None, {"curator", "admin"}),
        ],
        "api:document-versions": [("get", f"/api/v1/documents/{o['document']}/versions", None, BOARD)],
        "api:jobs": [("get", "/api/v1/jobs", None, BOARD)],
        "api:job": [("get", f"/api/v1/jobs/{o['version']}", None, BOARD)],
        "api:search": [("post", "/api/v1/search", {"query": SECRET_WORD}, BOARD)],
        "api:ask": [("post", "/api/v1/ask", {"question": "When does the merger close?"}, BOARD)],
        "api:questions": [("get", "/api/v1/questions", None, BOARD)],  # each their own, and readers
        "api:conversations": [
            ("get", "/api/v1/conversations", None, {"asker"}),
            ("post", "/api/v1/conversations", {"title": "Canteen"}, SIGNED_IN),
        ],
        "api:conversation": [
            ("get", f"/api/v1/conversations/{o['conversation']}", None, {"asker"}),
            (
                "patch",
                f"/api/v1/conversations/{o['conversation']}",
                {"title": f"{SECRET_WORD} deal"},
                {"asker"},
            ),
            ("delete", f"/api/v1/conversations/{o['conversation']}", None, {"asker"}),
        ],
        "api:question": [("get", f"/api/v1/questions/{o['question']}", None, {"asker"})],
        "api:feedback": [
            ("post", f"/api/v1/questions/{o['question']}/feedback", {"rating": "up"}, {"asker"})
        ],
        "api:batches": [
            ("post", "/api/v1/batches", {"questions": ["When?"], "collections": [collection]}, BOARD)
        ],
        "api:batch": [("get", f"/api/v1/batches/{o['batch']}", None, {"asker"})],
    }


def test_every_url_is_in_the_matrix(world):
    listed = set(calls(world["objects"], "")) | OPEN
    assert set(url_names(get_resolver().url_patterns)) == listed
    assert {model._meta.label for model in admin.site._registry} == set(ADMIN_MODELS)


def page_client(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def api_client(user) -> Client:
    client = Client()
    if user is not None:
        key = create_token(user=user, name="matrix").key
        client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def without_echoes(text: str, data) -> str:
    """The response without what the caller sent: a question is stored and shown back as asked, a
    collection the caller named is named back ("no collection named …") exactly as one that does
    not exist. That tells them nothing new; anything else with the secret word would."""
    sent = [value for value in (data or {}).values() if isinstance(value, str) and value != SECRET_WORD]
    sent += [name for value in (data or {}).values() if isinstance(value, list) for name in value]
    for value in sent:
        text = text.replace(value, "…")
    return text


def body(response) -> str:
    if not response.streaming:
        return response.content.decode(errors="replace")
    if response.is_async:  # the streamed answer, read to its end as a browser would

        async def read():
            return b"".join([part async for part in response.streaming_content])

        return async_to_sync(read)().decode(errors="replace")
    return b"".join(response.streaming_content).decode(errors="replace")


def test_nobody_reaches_the_boards_documents_through_any_url(world):
    users = {"anonymous": None, **world["users"]}
    every_call = [
        (name, *case) for name, cases in calls(world["objects"], BOARD_COLLECTION).items() for case in cases
    ]
    # Deleting the document and the thread comes last.
    every_call.sort(key=lambda call: call[1] == "delete" or call[0] == "delete-conversation")
    for name, method, url, data, allowed in every_call:
        for who, user in users.items():
            client = api_client(user) if url.startswith("/api/") else page_client(user)
            send = getattr(client, method)
            if (
                url.startswith("/api/")
                and data is not None
                and method in ("post", "patch")
                and name != "api:documents"
            ):
                response = send(url, data, content_type="application/json")
            else:
                response = send(url, data or {})
            text = without_echoes(body(response), data)
            where = f"{who} {method.upper()} {url} ({name}) -> {response.status_code}"
            if who in allowed:
                assert response.status_code < 500, where
                if method == "get" and name not in HOLDS_NO_CONTENT:
                    assert SECRET_WORD in text.lower(), f"{where}: what they may see is missing"
                continue
            # Not allowed: the same answer a missing object or collection gets, and no trace.
            assert SECRET_WORD not in text.lower(), where
            assert response.status_code in (302, 400, 401, 403, 404) or (
                response.status_code == 200 and name in LISTS
            ), where
            if response.status_code == 403:
                assert who not in ("anonymous", "outsider", "other_curator") or name in STAFF_ONLY, where


# URLs that answer 200 with a list (or a page) that simply lacks what the caller may not see.
LISTS = {
    "ask",
    "api:collections",
    "api:documents",
    "api:jobs",
    "api:search",
    "api:questions",
    "api:conversations",
    "api:ask",
    "review-queue",
}
# Pages allowed callers get without the board's words in them: counts, and question texts.
HOLDS_NO_CONTENT = {"dashboard", "review-queue", "api:questions"}
# Console pages that refuse non-administrators with 403 (they exist for everyone; hold nothing then).
STAFF_ONLY = {"dashboard"}


def test_console_model_pages_show_only_what_each_caller_may_see(world):
    """Curators get the console, but only the board's curator (and administrators) see its rows."""
    users = {"anonymous": None, **world["users"]}
    for model, allowed in ADMIN_MODELS.items():
        url = f"/admin/{model.replace('.', '/').lower()}/"
        for who, user in users.items():
            response = page_client(user).get(url)
            where = f"{who} GET {url} -> {response.status_code}"
            signed_out = user is None or not user.is_staff  # the console sends them to its sign-in
            assert response.status_code == (200 if who in allowed else 302 if signed_out else 403), where
            if who not in ("curator", "admin"):
                assert SECRET_WORD not in body(response).lower(), where
