"""The console dashboard's numbers: one value per day over the last days, from stored rows.

Percentiles are PostgreSQL's percentile_cont, computed per day in one query per measure.
"""

from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Aggregate, Count, F, FloatField, Q, QuerySet, Sum
from django.db.models.functions import NullIf, TruncDate
from django.utils import timezone

from kb.models import Answer, DocumentVersion, Feedback, Question

State = DocumentVersion.JobState
REFUSALS = [Answer.Outcome.NOT_FOUND, Answer.Outcome.BLOCKED, Answer.Outcome.ENGINE_UNAVAILABLE]


class Percentile(Aggregate):
    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


@dataclass(frozen=True)
class Dashboard:
    days: list[date]
    questions: dict[str, list[float]]  # asked, of them answered from the cache
    latency: dict[str, list[float | None]]  # seconds, p50 and p95
    first_token: dict[str, list[float | None]]  # seconds, p50 and p95
    rates: dict[str, list[float | None]]  # percent: cache hits, refusals
    feedback: dict[str, list[float]]  # up, down
    ingestion: dict[str, list[float]]  # versions done, failed
    chunks: dict[str, list[float]]  # chunks indexed
    tokens_per_second: dict[str, list[float | None]]  # decoding speed, p50
    totals: dict[str, float | int | None]


def dashboard(*, days: int = 30, today: date | None = None) -> Dashboard:
    today = today or timezone.localdate()
    span = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    since = span[0]

    questions = _per_day(
        Question.objects.filter(created_at__date__gte=since),
        asked=Count("id"),
        cached=Count("id", filter=Q(cache_hit=True)),
        refused=Count("id", filter=Q(answer__outcome__in=REFUSALS)),
        p50=Percentile("latency_ms", 0.5),
        p95=Percentile("latency_ms", 0.95),
    )
    generated = _per_day(
        Answer.objects.filter(created_at__date__gte=since, first_token_ms__isnull=False),
        p50=Percentile("first_token_ms", 0.5),
        p95=Percentile("first_token_ms", 0.95),
        # Decoding speed: the tokens after the first over the time after the first.
        speed=Percentile(
            (F("generated_tokens") - 1) * 1000.0 / NullIf(F("generation_ms") - F("first_token_ms"), 0), 0.5
        ),
    )
    feedback = _per_day(
        Feedback.objects.filter(updated_at__date__gte=since),
        field="updated_at",
        up=Count("id", filter=Q(rating=Feedback.Rating.UP)),
        down=Count("id", filter=Q(rating=Feedback.Rating.DOWN)),
    )
    ingestion = _per_day(
        DocumentVersion.objects.filter(updated_at__date__gte=since, job_state__in=[State.DONE, State.FAILED]),
        field="updated_at",
        done=Count("id", filter=Q(job_state=State.DONE)),
        failed=Count("id", filter=Q(job_state=State.FAILED)),
        chunks=Sum("chunks_total", filter=Q(job_state=State.DONE)),
    )

    def series(rows, key, scale=1.0):
        return [None if rows.get(day, {}).get(key) is None else rows[day][key] * scale for day in span]

    def counts(rows, key):
        return [rows.get(day, {}).get(key) or 0 for day in span]

    asked, cached, refused = (
        counts(questions, "asked"),
        counts(questions, "cached"),
        counts(questions, "refused"),
    )
    return Dashboard(
        days=span,
        questions={
            "answered anew": [a - c for a, c in zip(asked, cached, strict=True)],
            "from the cache": cached,
        },
        latency={"p50": series(questions, "p50", 0.001), "p95": series(questions, "p95", 0.001)},
        first_token={"p50": series(generated, "p50", 0.001), "p95": series(generated, "p95", 0.001)},
        rates={
            "cache hits": [100 * c / a if a else None for c, a in zip(cached, asked, strict=True)],
            "refusals": [100 * r / a if a else None for r, a in zip(refused, asked, strict=True)],
        },
        feedback={"helpful": counts(feedback, "up"), "not helpful": counts(feedback, "down")},
        ingestion={"done": counts(ingestion, "done"), "failed": counts(ingestion, "failed")},
        chunks={"chunks indexed": counts(ingestion, "chunks")},
        tokens_per_second={"p50": series(generated, "speed")},
        totals={
            "questions": sum(asked),
            "cache_hit_rate": sum(cached) / sum(asked) if sum(asked) else None,
            "refusal_rate": sum(refused) / sum(asked) if sum(asked) else None,
            "negative_feedback": sum(counts(feedback, "down")),
            "documents_done": sum(counts(ingestion, "done")),
            "documents_failed": sum(counts(ingestion, "failed")),
        },
    )


def _per_day(rows: QuerySet, *, field: str = "created_at", **measures) -> dict[date, dict]:
    grouped = rows.annotate(day=TruncDate(field)).values("day").annotate(**measures).order_by("day")
    return {row["day"]: row for row in grouped}
