"""`evaluate --conversations`: follow-ups of multi-turn cases searched as each rewrite method makes
them and answered in threads, through the real pipeline and the real engine (SmolLM2)."""

import json

import pytest
from django.core.management import CommandError, call_command

from kb.models import Conversation, Question

pytestmark = pytest.mark.django_db

LEAVE = (
    b"# Annual leave\n\nEmployees may carry over five days of annual leave into the next year. "
    b"Contractors may carry over no days of leave. Leave requests are approved by the line manager.\n"
)
PAYROLL = b"# Payroll\n\nSalaries are paid on the 25th of each month. Contractors invoice monthly.\n"
TRAVEL = b"# Travel\n\nTrain tickets are booked through the travel desk, second class.\n"
CASES = [
    {
        "id": "leave",
        "lang": "en",
        "turns": [
            {
                "question": "How many days of annual leave can employees carry over?",
                "answers": ["five days"],
                "doc": "en_hr_leave.md",
                "evidence": "Employees may carry over five days of annual leave into the next year.",
            },
            {
                # Searched as asked, "contractors" finds the payroll document first.
                "question": "And contractors?",
                "standalone": "How many days of annual leave can contractors carry over?",
                "answers": ["no days"],
                "doc": "en_hr_leave.md",
                "evidence": "Contractors may carry over no days of leave.",
            },
        ],
    },
    {
        "id": "tickets",
        "lang": "en",
        "turns": [
            {
                "question": "How are train tickets booked?",
                "answers": ["through the travel desk"],
                "doc": "en_hr_travel.md",
                "evidence": "Train tickets are booked through the travel desk, second class.",
            },
            {
                "question": "In which class?",
                "standalone": "In which class are train tickets booked?",
                "answers": ["second class"],
                "doc": "en_hr_travel.md",
                "evidence": "Train tickets are booked through the travel desk, second class.",
            },
        ],
    },
]


@pytest.fixture
def folder(tmp_path, celery_worker):
    # No worker: the command then ingests in this process, inside this test's transaction.
    celery_worker.stop()
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, data in (("en_hr_leave.md", LEAVE), ("en_hr_payroll.md", PAYROLL), ("en_hr_travel.md", TRAVEL)):
        (docs / name).write_bytes(data)
    return docs


def write_cases(path, cases) -> str:
    path.write_text("\n".join(json.dumps(case) for case in cases), encoding="utf-8")
    return str(path)


def test_follow_ups_are_scored_for_every_rewrite_method_and_answered_in_threads(engine, folder, tmp_path):
    cases = write_cases(tmp_path / "cases.jsonl", CASES)
    out = tmp_path / "report.json"
    call_command(
        "evaluate", "--docs", str(folder), "--conversations", cases, "--mode", "all", "--json", str(out)
    )
    report = json.loads(out.read_text())
    assert (report["conversations"], report["follow_ups"]) == (2, 2)
    retrieval = report["retrieval"]
    assert list(retrieval) == ["as_asked", "rules", "engine", "standalone"]
    for method, scores in retrieval.items():
        assert scores["all"]["questions"] == 2 and sum(scores["rewrites"].values()) == 2, method
    assert retrieval["as_asked"]["rewrites"] == {"none": 2}
    assert retrieval["rules"]["rewrites"] == {"rules": 2}
    assert set(retrieval["engine"]["rewrites"]) <= {"engine", "rules", "none"}
    assert retrieval["standalone"]["all"]["mrr@10"] == 1.0
    # The rewrite puts the leave document first where the follow-up alone does not.
    assert retrieval["rules"]["all"]["mrr@10"] == 1.0 > retrieval["as_asked"]["all"]["mrr@10"]
    answers = report["answers"]["all"]
    assert answers["questions"] == 2 and answers["errors"] == 0
    assert sum(answers["rewrites"].values()) == 2
    # Each case was asked in a thread of its own, first question and follow-up.
    threads = Conversation.objects.filter(user__username="evaluate")
    assert [thread.questions.count() for thread in threads] == [2, 2]
    follow_up = Question.objects.get(text="And contractors?")
    assert follow_up.rewrite and "contractors" in follow_up.search_query.casefold()


def test_without_an_engine_the_rewrites_are_scored_without_the_engine_method(settings, folder, tmp_path):
    settings.ENGINE_URLS = []
    cases = write_cases(tmp_path / "cases.jsonl", CASES[:1])
    out = tmp_path / "report.json"
    call_command("evaluate", "--docs", str(folder), "--conversations", cases, "--json", str(out))
    assert list(json.loads(out.read_text())["retrieval"]) == ["as_asked", "rules", "standalone"]


@pytest.mark.parametrize(
    "case, why",
    [
        ({"id": "x", "turns": [CASES[0]["turns"][0]]}, "at least one follow-up"),
        (
            {"id": "x", "turns": [CASES[0]["turns"][0], {**CASES[0]["turns"][1], "standalone": " "}]},
            "follow-up 1 has no standalone question",
        ),
        ({"id": "x", "turns": [{"question": "Who?"}, CASES[0]["turns"][1]]}, "turn 0 needs"),
        ({"turns": "none"}, "needs a first question"),
    ],
)
def test_a_malformed_case_file_is_refused_with_its_line(folder, tmp_path, case, why):
    cases = write_cases(tmp_path / "cases.jsonl", [CASES[1], case])
    with pytest.raises(CommandError, match=f"line 2: not a conversation .*{why}"):
        call_command("evaluate", "--docs", str(folder), "--conversations", cases)


def test_questions_and_conversations_are_not_evaluated_together(folder, tmp_path):
    cases = write_cases(tmp_path / "cases.jsonl", CASES)
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command("evaluate", "--docs", str(folder), "--conversations", cases, "--questions", cases)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(CommandError, match="holds no conversation"):
        call_command("evaluate", "--docs", str(folder), "--conversations", str(empty))
