"""Collection presets through the real pipeline: chosen in the console when a collection is created,
edited by its curators (not its access), and applied to chunking, retrieval depth, citations,
refusals, the answer's style and disclaimer, and which sensitive-term lists screen a question."""

import json

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from kb.answering.policy import combined_policy
from kb.answering.prompt import answer_messages
from kb.models import Answer, AuditEvent, Collection, SensitiveTerm
from kb.presets import AnswerStyle, Preset, apply_preset
from kb.services.answers import ask
from kb.services.sensitive_terms import screen_text, terms_version
from tests.api.conftest import api, openapi_schema  # noqa: F401  (fixtures)
from tests.test_search_access import ingest

pytestmark = pytest.mark.django_db

Outcome = Answer.Outcome
LEAVE = (
    b"# Annual leave\n\nEmployees may carry over five days of annual leave into the next year. "
    b"Leave requests are approved by the line manager.\n"
)
DOSAGE = b"# Dosage\n\nThe adult dose of paracetamol is 500 mg every six hours, at most 4 g a day.\n"


def collection(name: str, preset: str = Preset.GENERAL, **changes) -> Collection:
    row = Collection(name=name)
    apply_preset(row, preset)
    for field, value in changes.items():
        setattr(row, field, value)
    row.save()
    return row


@pytest.fixture
def root(client):
    user = User.objects.create_superuser("root", password="pw-root-123")
    client.force_login(user)
    return user


def test_a_preset_chosen_in_the_console_fills_in_the_new_collections_settings(client, root):
    response = client.post(
        "/admin/kb/collection/add/", {"name": "Contracts", "description": "", "preset": "legal"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    contracts = Collection.objects.get(name="Contracts")
    assert (contracts.preset, contracts.chunking) == (Preset.LEGAL, (400, 80))
    assert (contracts.answer_sources, contracts.citation_threshold, contracts.refusal_threshold) == (
        6,
        0.7,
        0.5,
    )
    assert (contracts.factcheck_policy, contracts.answer_style) == ("drop", AnswerStyle.QUOTED)
    assert (
        contracts.sensitive_term_lists == ["legal privilege"] and "not legal advice" in contracts.disclaimer
    )
    assert AuditEvent.objects.filter(action="create", object_id=str(contracts.pk)).exists()
    # A general collection follows the site's settings: its own are left empty.
    client.post("/admin/kb/collection/add/", {"name": "Handbook", "description": "", "preset": "general"})
    handbook = Collection.objects.get(name="Handbook")
    assert handbook.answer_sources is None and handbook.chunking == (320, 64) and not handbook.disclaimer


def test_curators_edit_how_their_collection_answers_but_not_who_reads_it(client):
    medical = collection("Clinic", Preset.MEDICAL)
    other = collection("Other")
    curators, readers = Group.objects.create(name="clinic-curators"), Group.objects.create(name="staff")
    medical.curator_groups.add(curators)
    carol = User.objects.create_user("carol", password="pw-carol-123", is_staff=True)
    carol.groups.add(curators)
    client.force_login(carol)
    url = f"/admin/kb/collection/{medical.pk}/change/"
    page = client.get(url).content.decode()
    assert 'name="citation_threshold"' in page and 'name="reader_groups"' not in page
    assert 'name="sensitive_term_lists"' not in page  # naming a list changes other collections
    form = {
        "description": "",
        "chunk_window": "200",
        "chunk_overlap": "40",
        "answer_sources": "4",
        "citation_threshold": "0.8",
        "refusal_threshold": "0.9",
        "factcheck_policy": "flag",
        "answer_style": "cautious",
        "disclaimer": "Ask a clinician.",
        # Fields she may not change, sent anyway, are ignored.
        "name": "Renamed",
        "reader_groups": [readers.pk],
        "sensitive_term_lists": "",
    }
    assert client.post(url, form).status_code == 302
    medical.refresh_from_db()
    assert (medical.answer_sources, medical.citation_threshold, medical.factcheck_policy) == (4, 0.8, "flag")
    assert medical.chunking == (200, 40) and medical.disclaimer == "Ask a clinician."
    assert medical.name == "Clinic" and not medical.reader_groups.exists()
    assert medical.sensitive_term_lists == ["patient data"]
    change = AuditEvent.objects.get(action="update", object_id=str(medical.pk))
    assert change.actor == carol and "Citation strictness" in str(change.detail)
    # An overlap as long as the window is refused with a reason.
    response = client.post(url, form | {"chunk_overlap": "200"})
    assert response.status_code == 200 and "shorter than the chunk window" in response.content.decode()
    # Collections she does not curate, and creating or deleting any, stay closed.
    assert client.get(f"/admin/kb/collection/{other.pk}/change/").status_code in (302, 403, 404)
    assert client.get("/admin/kb/collection/add/").status_code == 403
    assert client.post(f"/admin/kb/collection/{medical.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Collection.objects.filter(pk=medical.pk).exists()


def test_each_collection_chunks_its_documents_with_its_own_window():
    text = (
        "# Manual\n\n" + " ".join(f"Step {n} of the procedure is documented here." for n in range(300))
    ).encode()
    fine = collection("Fine", chunk_window=64, chunk_overlap=16)
    coarse = collection("Coarse")
    fine_chunks = ingest(fine, "manual.md", text).current_version.chunks
    coarse_chunks = ingest(coarse, "manual.md", text).current_version.chunks
    assert max(fine_chunks.values_list("token_count", flat=True)) <= 64
    assert fine_chunks.count() > 3 * coarse_chunks.count()


def test_a_question_over_several_collections_is_answered_by_the_strictest_settings(settings):
    general = collection("Handbook")
    legal = collection("Contracts", Preset.LEGAL)
    flagging = collection(
        "Drafts", factcheck_policy="flag", answer_sources=9, answer_style=AnswerStyle.QUOTED
    )
    site = combined_policy([general])
    assert (site.sources, site.citation_threshold, site.factcheck_policy) == (
        settings.KB_ANSWER_SOURCES,
        settings.KB_FACTCHECK_THRESHOLD,
        settings.KB_ANSWER_POLICY,
    )
    both = combined_policy([general, legal])
    assert (both.sources, both.citation_threshold, both.refusal_threshold) == (6, 0.7, 0.5)
    assert both.style == AnswerStyle.PLAIN  # their styles differ
    assert combined_policy([flagging]).factcheck_policy == "flag"
    assert combined_policy([flagging, legal]).factcheck_policy == "drop"
    assert combined_policy([flagging, legal]).style == AnswerStyle.QUOTED and combined_policy([]) == site
    # The refusal threshold: the share of the answer's sentences the fact-check must back.
    assert both.refusal(supported=1, sentences=2) is None
    assert both.refusal(supported=1, sentences=3) == "too_little_supported"
    assert both.refusal(supported=0, sentences=1) == "nothing_supported"
    assert site.refusal(supported=1, sentences=5) is None


def test_the_answer_style_is_said_in_the_instructions():
    plain = answer_messages("Who approves leave?", [], language="en")[1]["content"]
    quoted = answer_messages("Who approves leave?", [], language="en", style=AnswerStyle.QUOTED)[1]["content"]
    chinese = answer_messages("谁审批？", [], language="zh", style=AnswerStyle.CAUTIOUS)[1]["content"]
    assert "own wording" in quoted and "own wording" not in plain
    assert quoted.endswith(plain.strip()) and "不针对具体个人" in chinese


def test_the_disclaimer_of_a_cited_collection_is_shown_to_those_who_may_read_it(engine, client, api):  # noqa: F811
    clinic = collection("Clinic", Preset.MEDICAL, citation_threshold=0.01, refusal_threshold=0.0)
    nurses = Group.objects.create(name="nurses")
    clinic.reader_groups.add(nurses)
    alice = User.objects.create_user("alice", password="pw-alice-123")
    alice.groups.add(nurses)
    ingest(clinic, "dosage.md", DOSAGE)
    asked = ask(user=alice, question="What is the adult dose of paracetamol?")
    assert asked.answer.outcome == Outcome.ANSWERED and asked.answer.citations.exists()
    client.force_login(alice)
    assert "not a substitute for professional medical judgement" in client.get(f"/questions/{asked.pk}").text
    token = api(alice)
    assert token.get(f"/api/v1/questions/{asked.pk}").json()["answer"]["disclaimers"] == [clinic.disclaimer]
    # Once she may no longer read the collection, neither its citations nor its disclaimer remain.
    alice.groups.remove(nurses)
    assert "medical judgement" not in client.get(f"/questions/{asked.pk}").text
    assert token.get(f"/api/v1/questions/{asked.pk}").json()["answer"]["disclaimers"] == []


def test_a_term_list_named_by_collections_screens_only_questions_asked_in_them(
    settings, django_capture_on_commit_callbacks
):
    settings.KB_SENSITIVE_TERMS_REFRESH_SECONDS = 0
    clinic = collection("Clinic", Preset.MEDICAL)
    handbook = collection("Handbook")
    SensitiveTerm.objects.create(term="patient number", category="patient data", action="block")
    SensitiveTerm.objects.create(term="falcon", category="codename", action="block")  # no collection names it
    question = "Which ward holds patient number 4411 and project falcon?"
    in_clinic = screen_text(question, actor=None, scopes=[clinic.pk])
    in_handbook = screen_text(question, actor=None, scopes=[handbook.pk])
    assert {match.term for match in in_clinic.blocking} == {"patient number", "falcon"}
    assert {match.term for match in in_handbook.blocking} == {"falcon"}
    # Clearing the clinic's lists puts "patient data" back everywhere, and changes the term
    # list's version, so no answer cached before is served again.
    before = terms_version()
    with django_capture_on_commit_callbacks(execute=True):
        clinic.sensitive_term_lists = []
        clinic.save()
    assert terms_version() != before
    in_handbook = screen_text(question, actor=None, scopes=[handbook.pk])
    assert {match.term for match in in_handbook.blocking} == {"patient number", "falcon"}


def test_evaluate_scores_a_preset_in_a_collection_of_its_own(tmp_path, celery_worker):
    celery_worker.stop()  # the command ingests in this process, inside the test's transaction
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "en_clinic_dosage.md").write_bytes(DOSAGE)
    questions = tmp_path / "questions.jsonl"
    row = {"id": "1", "question": "What is the adult dose of paracetamol?", "answers": ["500 mg"]}
    questions.write_text(json.dumps(row | {"doc": "en_clinic_dosage.md", "evidence": None, "lang": "en"}))
    out = tmp_path / "report.json"
    call_command(
        "evaluate",
        "--docs",
        str(docs),
        "--questions",
        str(questions),
        "--preset",
        "legal",
        "--json",
        str(out),
    )
    report = json.loads(out.read_text())
    assert report["preset"] == "legal" and report["collection"].endswith(" legal")
    assert (report["settings"]["chunk_window"], report["settings"]["chunk_overlap"]) == (400, 80)
    assert Collection.objects.get(name=report["collection"]).citation_threshold == 0.7
    assert report["retrieval"]["hybrid"]["all"]["recall@5"] == 1.0
