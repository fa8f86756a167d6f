"""Searching as a user: only readable collections, unknown and unreadable ones alike, moved documents,
and the `search` and `evaluate` commands, over documents ingested by the real pipeline."""

import io
import json

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command

from kb.models import Collection, Document
from kb.selectors import context_window
from kb.services.ingestion import process_version, upload_document
from kb.services.search import UnknownCollection, search_chunks

pytestmark = pytest.mark.django_db

LEAVE = b"# Leave\n\nEmployees may carry over five days of annual leave into the next year.\n"
PAYROLL = b"# Payroll\n\nSalaries are paid on the 25th; annual bonuses are paid in March.\n"
TRAVEL = b"# Travel\n\nTrain tickets are booked through the travel desk, second class.\n"


def ingest(collection: Collection, name: str, data: bytes) -> Document:
    version = upload_document(collection=collection, name=name, content=io.BytesIO(data)).version
    process_version(version.pk)
    return Document.objects.get(pk=version.document_id)


@pytest.fixture
def setup():
    hr, finance = Collection.objects.create(name="HR"), Collection.objects.create(name="Finance")
    staff, accountants = Group.objects.create(name="staff"), Group.objects.create(name="accountants")
    hr.reader_groups.add(staff)
    finance.curator_groups.add(accountants)
    alice = User.objects.create_user("alice", password="pw-alice-123")
    alice.groups.add(staff)
    bob = User.objects.create_user("bob", password="pw-bob-123")
    bob.groups.add(accountants)
    leave, payroll = ingest(hr, "leave.md", LEAVE), ingest(finance, "payroll.md", PAYROLL)
    return {"hr": hr, "finance": finance, "alice": alice, "bob": bob, "leave": leave, "payroll": payroll}


def titles(results) -> set[str]:
    return {result.chunk.version.document.title for result in results}


def test_users_find_only_what_their_groups_may_read(setup):
    assert titles(search_chunks(setup["alice"], "annual")) == {"Leave"}
    assert titles(search_chunks(setup["bob"], "annual")) == {"Payroll"}  # curators read too
    stranger = User.objects.create_user("carol", password="pw-carol-123")
    assert search_chunks(stranger, "annual") == []
    setup["alice"].is_active = False
    assert search_chunks(setup["alice"], "annual") == []


def test_an_unreadable_collection_is_reported_like_a_missing_one(setup):
    with pytest.raises(UnknownCollection) as unreadable:
        search_chunks(setup["alice"], "annual", collections=["Finance"])
    with pytest.raises(UnknownCollection) as missing:
        search_chunks(setup["alice"], "annual", collections=["Nowhere"])
    assert str(unreadable.value) == str(missing.value).replace("Nowhere", "Finance")


def test_a_moved_document_is_searched_with_its_new_collection(setup):
    setup["leave"].collection = setup["finance"]
    setup["leave"].save()
    assert search_chunks(setup["alice"], "annual leave") == []
    assert titles(search_chunks(setup["bob"], "annual leave")) == {"Leave", "Payroll"}


def test_search_command_prints_the_users_results_as_json(setup, capsys):
    call_command("search", "annual", "--user", "alice", "--json")
    rows = json.loads(capsys.readouterr().out)
    assert [row["document"] for row in rows] == ["Leave"] and rows[0]["collection"] == "HR"
    with pytest.raises(CommandError, match="no collection named 'Finance'"):
        call_command("search", "annual", "--user", "alice", "--collection", "Finance")
    with pytest.raises(CommandError, match="empty"):
        call_command("search", "   ")


def test_evaluate_scores_every_mode_on_a_folder(tmp_path, capsys, celery_worker):
    # No worker: the command then ingests in this process, inside this test's transaction (a
    # worker would never see the uncommitted uploads).
    celery_worker.stop()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "en_hr_leave.md").write_bytes(LEAVE)
    (docs / "en_hr_payroll.md").write_bytes(PAYROLL)
    (docs / "en_hr_travel.md").write_bytes(TRAVEL)  # three passages: BM25's idf is 0 with two
    questions = tmp_path / "questions.jsonl"
    rows = [
        {
            "id": "q1",
            "question": "How many days of leave carry over?",
            "answers": ["five days"],
            "doc": "en_hr_leave.md",
            "evidence": "carry over five days",
            "lang": "en",
        },
        {
            "id": "q2",
            "question": "When are salaries paid?",
            "answers": ["the 25th"],
            "doc": "en_hr_payroll.md",
            "evidence": None,
            "lang": "en",
        },
        {
            "id": "q3",
            "question": "Who won the 1990 World Cup?",
            "answers": [],
            "doc": None,
            "evidence": None,
            "lang": "en",
        },
    ]
    questions.write_text("\n".join(json.dumps(row) for row in rows))
    out = tmp_path / "scores.json"
    call_command("evaluate", "--docs", str(docs), "--questions", str(questions), "--json", str(out))
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert (report["questions"], report["answerable"], report["chunks"]) == (3, 2, 3)
    for mode in ("bm25", "dense", "hybrid"):
        scores = report["retrieval"][mode]
        assert set(scores) == {"all", "en", "en_hr"}
        assert scores["all"]["questions"] == 2
        assert scores["all"]["recall@5"] == scores["all"]["mrr@10"] == 1.0
    # A second run reuses the ingested collection: no new versions.
    call_command("evaluate", "--docs", str(docs), "--questions", str(questions))
    assert Document.objects.get(source="en_hr_leave.md").versions.count() == 1


def test_a_chunk_widens_to_its_neighbours_without_repeating_their_overlap():
    collection = Collection.objects.create(name="Manual")
    text = "# Manual\n\n" + " ".join(f"Step {n} of the procedure is documented here." for n in range(1, 200))
    document = ingest(collection, "manual.md", text.encode())
    chunks = list(document.current_version.chunks.order_by("ordinal"))
    assert len(chunks) >= 3
    middle = chunks[1]
    start, end, wide = context_window(middle)
    assert (start, end) == (chunks[0].char_start, chunks[2].char_end)
    assert wide == document.current_version.parsed_text[start:end]
    assert middle.text in wide and wide.count("Step 1 of") == 1
    first_start, first_end, _ = context_window(chunks[0], neighbours=0)
    assert (first_start, first_end) == (chunks[0].char_start, chunks[0].char_end)
