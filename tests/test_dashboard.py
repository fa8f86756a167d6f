"""The console dashboard: numbers per day from stored rows, drawn as SVG charts."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from kb.charts import bar_chart, line_chart, nice_ceiling
from kb.models import Answer, Collection, Feedback, Question
from kb.services.dashboard import dashboard
from retrieval import reembedding
from tests.test_search_access import ingest

pytestmark = pytest.mark.django_db


def asked(user, *, latency_ms, cache_hit=False, outcome=Answer.Outcome.ANSWERED, days_ago=0, **answer):
    created = timezone.now() - timedelta(days=days_ago)
    reply = Answer.objects.create(outcome=outcome, **answer)
    question = Question.objects.create(
        user=user, text="q", answer=reply, cache_hit=cache_hit, latency_ms=latency_ms
    )
    Question.objects.filter(pk=question.pk).update(created_at=created)
    Answer.objects.filter(pk=reply.pk).update(created_at=created)
    return question


def test_the_dashboard_counts_and_percentiles_per_day():
    user = User.objects.create_user("alice")
    for latency in (1000, 2000, 3000, 4000):
        asked(user, latency_ms=latency, first_token_ms=500, generation_ms=1500, generated_tokens=21)
    asked(user, latency_ms=10, cache_hit=True)
    asked(user, latency_ms=800, outcome=Answer.Outcome.NOT_FOUND)
    old = asked(
        user, latency_ms=9000, days_ago=2, first_token_ms=900, generation_ms=1900, generated_tokens=11
    )
    Feedback.objects.create(question=old, rating=Feedback.Rating.DOWN)

    data = dashboard(days=7)
    assert len(data.days) == 7 and data.days[-1] == timezone.localdate()
    assert data.questions["answered anew"][-1] == 5 and data.questions["from the cache"][-1] == 1
    assert data.questions["answered anew"][-3] == 1 and data.questions["answered anew"][0] == 0
    assert data.latency["p50"][-1] == pytest.approx(1.5)  # of 10, 800, 1000, 2000, 3000, 4000 ms
    assert data.latency["p50"][-3] == pytest.approx(9.0) and data.latency["p50"][-2] is None
    assert data.first_token["p50"][-1] == pytest.approx(0.5)
    assert data.tokens_per_second["p50"][-1] == pytest.approx(20.0)  # 20 tokens after the first in 1 s
    assert data.tokens_per_second["p50"][-3] == pytest.approx(10.0)
    assert data.rates["cache hits"][-1] == pytest.approx(100 / 6)
    assert data.rates["refusals"][-1] == pytest.approx(100 / 6)
    assert data.feedback["not helpful"][-1] == 1  # given today, on an older question
    assert data.totals["questions"] == 7 and data.totals["negative_feedback"] == 1


def test_charts_are_svg_with_a_round_axis_and_escaped_labels():
    days = [timezone.localdate() - timedelta(days=n) for n in (2, 1, 0)]
    chart = line_chart("<Latency>", days, {"p50": [1.2, None, 3.7], "p95": [2.0, None, 7.1]}, unit="s")
    assert chart.startswith("<svg") and "<title>&lt;Latency&gt;</title>" in chart
    assert chart.count("<polyline") == 4  # each series broken by the day without data
    assert ">10s</text>" in chart  # 7.1 rounds the axis up to 10
    bars = bar_chart("Questions", days, {"new": [3, 0, 5], "cached": [1, 0, 0]})
    assert bars.count("<rect x=") - 2 == 3  # three non-empty segments besides the two legend keys
    assert [nice_ceiling(v) for v in (0, 0.7, 3, 7.1, 26, 240)] == [1, 1, 5, 10, 50, 250]


def test_the_dashboard_page_is_for_administrators(client):
    client.force_login(User.objects.create_user("curator", is_staff=True))
    assert client.get("/admin/dashboard/").status_code == 403
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    page = client.get("/admin/dashboard/?days=7")
    assert page.status_code == 200 and page.content.count(b'<svg class="chart"') == 8
    assert b"0 passages embedded with <strong>all-MiniLM-L6-v2</strong>" in page.content
    assert b"re-embedding" not in page.content
    assert b'href="/admin/dashboard/"' in client.get("/admin/").content


def test_the_dashboard_shows_a_re_embedding_under_way(client):
    ingest(Collection.objects.create(name="HR"), "leave.md", b"# Leave\n\nFive days carry over.\n")
    reembedding.begin("multilingual-e5-small")
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    page = client.get("/admin/dashboard/").content
    assert b"re-embedding with <strong>multilingual-e5-small</strong>" in page
    assert b'<progress max="1" value="0"></progress> 0 / 1' in page
