"""The staff pages' access rules, through Django's test client: whatever belongs to someone else,
or to a collection the user may not read, is a 404, never a 403 or a leak."""

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from kb.models import Answer, ApiToken, AuditEvent, Citation, Collection, Question
from tests.test_search_access import ingest

pytestmark = pytest.mark.django_db

LEAVE = b"# Annual leave\n\nEmployees may carry over five days of annual leave into the next year.\n"
PAYROLL = b"# Payroll\n\nSalaries are paid on the 25th of each month.\n"


@pytest.fixture
def world():
    hr, finance = Collection.objects.create(name="HR"), Collection.objects.create(name="Finance")
    staff, accountants = Group.objects.create(name="staff"), Group.objects.create(name="accountants")
    hr.reader_groups.add(staff)
    finance.reader_groups.add(accountants)
    alice = User.objects.create_user("alice", password="pw-alice-123")
    alice.groups.add(staff, accountants)
    bob = User.objects.create_user("bob", password="pw-bob-123")
    bob.groups.add(staff)
    payroll = ingest(finance, "payroll.md", PAYROLL)
    ingest(hr, "leave.md", LEAVE)
    # An answer alice got, citing the payroll document (stored rows, as ask() writes them).
    version = payroll.current_version
    chunk = version.chunks.first()
    answer = Answer.objects.create(outcome=Answer.Outcome.ANSWERED, text="Salaries are paid on the 25th.[1]")
    citation = Citation.objects.create(
        answer=answer,
        number=1,
        chunk=chunk,
        version=version,
        document=payroll,
        collection=finance,
        title=payroll.title,
        char_start=chunk.char_start,
        char_end=chunk.char_end,
    )
    question = Question.objects.create(user=alice, text="When are salaries paid?", answer=answer)
    return {
        "alice": alice,
        "bob": bob,
        "citation": citation,
        "question": question,
        "accountants": accountants,
    }


def test_signed_out_visitors_are_sent_to_sign_in(client):
    for url in ("/", "/questions/1", "/citations/1", "/files/1"):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/accounts/login/")
    assert client.post("/ask", {"question": "hello"}).status_code == 302


def test_citations_files_questions_and_feedback_of_others_are_404(client, world):
    citation, question = world["citation"], world["question"]
    client.force_login(world["alice"])
    panel = client.get(f"/citations/{citation.pk}")
    assert panel.status_code == 200 and b"Salaries are paid on the 25th" in panel.content
    assert b"<mark" in panel.content
    assert client.get(f"/files/{citation.version_id}").status_code == 200
    assert client.get(f"/questions/{question.pk}").status_code == 200

    client.force_login(world["bob"])  # reads HR only, and never asked this
    assert client.get(f"/citations/{citation.pk}").status_code == 404
    assert client.get(f"/files/{citation.version_id}").status_code == 404
    assert client.get(f"/questions/{question.pk}").status_code == 404
    assert client.post(f"/questions/{question.pk}/feedback", {"rating": "down"}).status_code == 404


def test_a_reader_who_loses_access_no_longer_opens_what_they_were_shown(client, world):
    world["alice"].groups.remove(world["accountants"])
    client.force_login(world["alice"])
    assert client.get(f"/citations/{world['citation'].pk}").status_code == 404
    page = client.get(f"/questions/{world['question'].pk}")
    assert page.status_code == 200 and b"data-citation" not in page.content  # the marker is gone too


def test_asking_about_a_collection_the_user_may_not_read_is_refused(client, world):
    client.force_login(world["bob"])
    response = client.post("/ask", {"question": "When are salaries paid?", "collections": ["Finance"]})
    assert response.status_code == 400 and "no collection named 'Finance'" in response.json()["error"]
    response = client.post("/ask", {"question": "   "})
    assert response.status_code == 400


def test_create_token_prints_a_working_key_once_and_audits_it(capsys, world, client):
    call_command("create_token", "alice", "--read-only", "--collection", "HR", "--name", "intranet")
    key = capsys.readouterr().out.strip()
    token = ApiToken.objects.get()
    assert key.startswith(token.prefix) and token.key_hash != key and token.read_only
    assert [c.name for c in token.collections.all()] == ["HR"]
    assert AuditEvent.objects.filter(action="create", object_type="kb.ApiToken").exists()
    response = client.get("/api/v1/collections", headers={"Authorization": f"Bearer {key}"})
    assert [c["name"] for c in response.json()["results"]] == ["HR"]
    with pytest.raises(Exception, match="may not read a collection named 'Secret'"):
        call_command("create_token", "alice", "--collection", "Secret")


def test_an_administrator_creates_a_token_in_the_console_and_sees_its_key_once(client, world):
    root = User.objects.create_superuser("root", password="pw-root-123")
    client.force_login(root)
    response = client.post(
        "/admin/kb/apitoken/add/",
        {"user": world["bob"].pk, "name": "reports", "collections": []},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(message) for message in response.context["messages"]]
    key = shown[0].rsplit(" ", 1)[-1]
    assert key.startswith("kb_") and ApiToken.objects.get().user == world["bob"]
    client.logout()
    listed = client.get("/api/v1/collections", headers={"Authorization": f"Bearer {key}"})
    assert [c["name"] for c in listed.json()["results"]] == ["HR"]
    client.force_login(world["alice"])  # not an administrator: no tokens for anyone here
    assert client.get("/admin/kb/apitoken/").status_code in (302, 403)


def test_the_original_file_is_served_as_uploaded(client, world):
    client.force_login(world["alice"])
    response = client.get(f"/files/{world['citation'].version_id}")
    assert b"".join(response.streaming_content) == PAYROLL
    assert "payroll.md" in response["Content-Disposition"]
