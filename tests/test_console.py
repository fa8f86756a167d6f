"""The curation console beyond model pages: live upload progress, re-index, hide and show, the
chunk browser, the review queue and the audit log's CSV export."""

import csv
import io

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile

from kb.models import (
    Answer,
    AnswerSentence,
    AuditEvent,
    Chunk,
    Citation,
    Collection,
    Feedback,
    Question,
    Review,
)
from kb.services.ingestion import process_version
from kb.services.search import search_chunks
from tests.test_search_access import ingest

pytestmark = pytest.mark.django_db

LEAVE = b"# Annual leave\n\nEmployees may carry over five days of annual leave into the next year.\n"


@pytest.fixture
def hr():
    collection = Collection.objects.create(name="HR")
    curators, readers = Group.objects.create(name="hr-curators"), Group.objects.create(name="staff")
    collection.curator_groups.add(curators)
    collection.reader_groups.add(readers)
    carol = User.objects.create_user("carol", password="pw-carol-123", is_staff=True)
    carol.groups.add(curators)
    alice = User.objects.create_user("alice", password="pw-alice-123")
    alice.groups.add(readers)
    leave = ingest(collection, "leave.md", LEAVE)
    return {"collection": collection, "carol": carol, "alice": alice, "leave": leave}


def test_uploads_answer_json_and_their_jobs_can_be_followed(client, hr, django_capture_on_commit_callbacks):
    client.force_login(hr["carol"])
    url = f"/admin/kb/collection/{hr['collection'].pk}/upload/"
    with django_capture_on_commit_callbacks():
        response = client.post(
            url,
            {"files": [SimpleUploadedFile("travel.md", b"# Travel\n\nBook trains early.\n")]},
            headers={"Accept": "application/json"},
        )
    [result] = response.json()["results"]
    assert result["created"] and not result["error"]
    empty = client.post(
        url, {"files": [SimpleUploadedFile("empty.md", b"")]}, headers={"Accept": "application/json"}
    )
    assert empty.json()["results"][0]["error"] == "the file is empty"
    jobs_url = f"/admin/kb/collection/{hr['collection'].pk}/jobs/?ids={result['job']},999999"
    assert client.get(jobs_url).json()["jobs"][str(result["job"])]["state"] == "queued"
    process_version(result["job"])
    job = client.get(jobs_url).json()["jobs"][str(result["job"])]
    assert job["state"] == "done" and job["chunks_done"] == job["chunks_total"] > 0
    client.force_login(hr["alice"])  # not staff: the console is closed to her
    assert client.get(jobs_url).status_code == 302


def test_reindex_makes_a_new_version_swapped_in_like_an_upload(
    client, hr, django_capture_on_commit_callbacks
):
    client.force_login(hr["carol"])
    leave = hr["leave"]
    with django_capture_on_commit_callbacks() as queued:
        client.post("/admin/kb/document/", {"action": "reindex", "_selected_action": [leave.pk]})
    assert len(queued) == 1
    new = leave.versions.get(number=2)
    assert new.sha256 == leave.current_version.sha256 and new.job_state == "queued"
    process_version(new.pk)
    leave.refresh_from_db()
    assert leave.current_version == new
    assert [r.chunk.version_id for r in search_chunks(hr["alice"], "annual leave")] == [new.pk]
    assert AuditEvent.objects.filter(action="reindex", object_id=str(leave.pk)).exists()


def test_hidden_documents_leave_every_search_until_shown_again(
    client, hr, django_capture_on_commit_callbacks
):
    client.force_login(hr["carol"])
    leave = hr["leave"]
    assert search_chunks(hr["alice"], "annual leave")
    # Committing (the callbacks) is what invalidates cached search results.
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/kb/document/", {"action": "hide", "_selected_action": [leave.pk]})
    assert search_chunks(hr["alice"], "annual leave") == []
    # A new version of a hidden document stays hidden.
    with django_capture_on_commit_callbacks(execute=True):
        ingest(hr["collection"], "leave.md", LEAVE + b"Unused days lapse in March.\n")
    assert search_chunks(hr["alice"], "annual leave lapse") == []
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/kb/document/", {"action": "show", "_selected_action": [leave.pk]})
    assert search_chunks(hr["alice"], "annual leave lapse")
    events = AuditEvent.objects.filter(object_id=str(leave.pk), action__in=["hide", "show"])
    assert [event.action for event in events] == ["show", "hide"]


def test_a_curator_deletes_a_document_with_its_versions_and_chunks(
    client, hr, django_capture_on_commit_callbacks
):
    leave = hr["leave"]
    ingest(hr["collection"], "leave.md", LEAVE + b"Unused days lapse in March.\n")  # a second version
    client.force_login(hr["carol"])
    confirm = client.get(f"/admin/kb/document/{leave.pk}/delete/")
    assert confirm.status_code == 200 and b"Chunk" in confirm.content  # listed as going with it
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/kb/document/{leave.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Chunk.objects.filter(version__document_id=leave.pk).exists()
    assert search_chunks(hr["alice"], "annual leave") == []
    assert AuditEvent.objects.filter(action="delete", object_id=str(leave.pk)).exists()


def test_the_chunk_browser_shows_a_documents_chunks(client, hr):
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    page = client.get(f"/admin/kb/chunk/?version__document__id__exact={hr['leave'].pk}")
    assert page.status_code == 200 and b"Employees may carry over five days" in page.content
    document_page = client.get(f"/admin/kb/document/{hr['leave'].pk}/change/")
    assert b"chunks</a>" in document_page.content


def answer_citing(document, *, asker, unsupported=True) -> Answer:
    chunk = document.current_version.chunks.first()
    answer = Answer.objects.create(outcome=Answer.Outcome.ANSWERED, text="Five days carry over.[1]")
    citation = Citation.objects.create(
        answer=answer,
        number=1,
        chunk=chunk,
        version=chunk.version,
        document=document,
        collection=document.collection,
        title=document.title,
        char_start=chunk.char_start,
        char_end=chunk.char_end,
    )
    shown = AnswerSentence.objects.create(
        answer=answer, ordinal=0, text="Five days carry over.", verdict="supported"
    )
    shown.citations.set([citation])
    if unsupported:
        AnswerSentence.objects.create(
            answer=answer, ordinal=1, text="Ten in Paris.", verdict="unsupported", shown=False
        )
    question = Question.objects.create(user=asker, text="How many days carry over?", answer=answer)
    question.collections.set([document.collection])
    return answer


def test_the_review_queue_takes_unsupported_and_disliked_answers_to_a_decision(client, hr):
    flagged = answer_citing(hr["leave"], asker=hr["alice"])
    disliked = answer_citing(hr["leave"], asker=hr["alice"], unsupported=False)
    Feedback.objects.create(question=disliked.questions.get(), rating="down", comment="Wrong")
    answer_citing(hr["leave"], asker=hr["alice"], unsupported=False)  # fine: not in the queue
    other = User.objects.create_user("otto", is_staff=True)  # curates nothing
    client.force_login(other)
    assert b"Nothing to review" in client.get("/admin/review/").content
    assert client.get(f"/admin/review/{flagged.pk}/").status_code == 404

    client.force_login(hr["carol"])
    queue = client.get("/admin/review/").content.decode()
    assert queue.count("/admin/review/") - queue.count('href="/admin/review/?') >= 2
    assert f"/admin/review/{flagged.pk}/" in queue and f"/admin/review/{disliked.pk}/" in queue
    assert (
        f"/admin/review/{disliked.pk}/"
        not in client.get("/admin/review/?reason=unsupported").content.decode()
    )
    page = client.get(f"/admin/review/{flagged.pk}/").content.decode()
    assert "Ten in Paris." in page and "not shown" in page

    client.post(f"/admin/review/{flagged.pk}/", {"action": "correct"})
    response = client.post(
        f"/admin/review/{disliked.pk}/", {"action": "corrected", "corrected_text": ""}, follow=True
    )
    assert "Write the right answer to correct this one" in response.content.decode()
    client.post(
        f"/admin/review/{disliked.pk}/", {"action": "corrected", "corrected_text": "Six days carry over."}
    )
    assert Review.objects.get(answer=disliked).corrected_text == "Six days carry over."
    assert f"/admin/review/{flagged.pk}/" not in client.get("/admin/review/").content.decode()
    assert AuditEvent.objects.filter(action="review").count() == 2

    client.force_login(hr["alice"])  # the asker now sees the correction
    page = client.get(f"/questions/{disliked.questions.get().pk}").content.decode()
    assert "A reviewer corrected this answer" in page and "Six days carry over." in page


def test_a_reviewer_hides_a_cited_document(client, hr, django_capture_on_commit_callbacks):
    answer = answer_citing(hr["leave"], asker=hr["alice"])
    client.force_login(hr["carol"])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/admin/review/{answer.pk}/", {"action": "hide", "document": hr["leave"].pk})
    hr["leave"].refresh_from_db()
    assert hr["leave"].hidden and search_chunks(hr["alice"], "annual leave") == []


def test_the_audit_log_exports_what_the_list_shows_as_csv(client, hr):
    root = User.objects.create_superuser("root", password="pw-root-123")
    AuditEvent.objects.create(actor_name="mallory", action="upload", object_repr="=HYPERLINK(1)")
    client.force_login(root)
    assert b"Export CSV" in client.get("/admin/kb/auditevent/").content
    response = client.get("/admin/kb/auditevent/export.csv?action__exact=upload")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["time", "actor", "action"]
    assert {row[2] for row in rows[1:]} == {"upload"} and len(rows) >= 3  # the fixture's uploads too
    assert ["'=HYPERLINK(1)"] == [row[5] for row in rows if row[1] == "mallory"]
    client.force_login(hr["carol"])  # curators do not read the audit log
    assert client.get("/admin/kb/auditevent/export.csv").status_code == 403
