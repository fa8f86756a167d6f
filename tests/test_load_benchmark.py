"""`bench load` against a real server: traffic over HTTP, a report, and nothing left behind."""

import json

import pytest
from django.contrib.auth.models import Group, User

from kb.models import ApiToken, Collection, Document
from kb.services.load_benchmark import KINDS, bench_load

pytestmark = pytest.mark.django_db(transaction=True)

# Enough documents that a word of one of them is rare (BM25 gives a word in half the documents no
# weight), so questions find passages and answers reach the engine.
DOCUMENTS = {
    "leave.md": "# Annual leave\n\nEmployees may carry over five days of annual leave into the next year. "
    "Leave requests are approved by the line manager.\n",
    "travel.md": "# Travel\n\nTrain tickets are booked through the travel desk. Flights need the approval "
    "of a director.\n",
    "expenses.md": "# Expenses\n\nReceipts are scanned and submitted within thirty days of purchase.\n",
    "security.md": "# Security\n\nBadges must be worn visibly; lost badges are reported to reception.\n",
    "parking.md": "# Parking\n\nThe garage opens at seven; bicycles go in the courtyard racks.\n",
}
QUESTIONS = ["Who approves leave requests?", "How many days of leave carry over?", "Who books train tickets?"]


@pytest.fixture
def corpus(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCUMENTS.items():
        (docs / name).write_text(text)
    questions = tmp_path / "questions.jsonl"
    rows = [{"id": f"q{n}", "question": text, "answers": [], "doc": None} for n, text in enumerate(QUESTIONS)]
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return docs, questions


def test_load_benchmark_reports_every_kind_of_request_without_errors_and_cleans_up(
    web_server, engine, corpus
):
    docs, questions = corpus
    seconds = []
    report = bench_load(
        url=web_server,
        users=2,
        seconds=6,
        docs=docs,
        questions=questions,
        engine_url=engine,
        mix={"search": 1, "ask": 1, "upload": 1},
        think_seconds=(0.05, 0.2),
        # Kinds are drawn from the seed whatever the timing: with 87, user 0 searches then uploads,
        # user 1 searches then asks, so every kind is requested however slowly the server starts.
        seed=87,
        on_second=lambda elapsed, totals: seconds.append(elapsed),
    )
    assert report["users"] == 2 and report["seeded_documents"] == len(DOCUMENTS)
    assert report["seed_failures"] == 0
    assert report["errors"] == 0 and report["first_errors"] == [], report["first_errors"]
    assert report["requests"] == sum(report[kind]["requests"] for kind in KINDS) > 0
    for kind in KINDS:
        assert report[kind]["requests"] > 0, kind
        assert report[kind]["errors"] == {}
        assert set(report[kind]["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert sum(report["ask"]["outcomes"].values()) == report["ask"]["requests"]
    assert report["engine"]["samples"] > 0 and report["engine"]["max_batch"] == 2
    assert report["targets"]["zero_errors"] is True
    assert seconds and seconds[-1] == 6
    # The fixture went: collection with its seeded and uploaded documents, users, tokens, group.
    assert not Collection.objects.exists() and not Document.objects.exists()
    assert not User.objects.exists() and not ApiToken.objects.exists() and not Group.objects.exists()
