"""The review queue: answers a person should look at, and what reviewers decide about them."""

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from kb.models import Answer, AnswerSentence, Collection, Feedback, Review
from kb.selectors import curated_collections
from kb.services import audit

Verdict = Review.Verdict


class InvalidReview(ValueError):
    pass


def reviewable_answers(user) -> QuerySet[Answer]:
    """Answers a user may review: administrators all; curators those asked only within
    collections they curate (so nobody reads answers drawn from documents they may not manage)."""
    if user.is_superuser:
        return Answer.objects.all()
    return (
        Answer.objects.filter(questions__isnull=False)
        .exclude(questions__collections__in=Collection.objects.exclude(pk__in=curated_collections(user)))
        .distinct()
    )


def review_queue(user) -> QuerySet[Answer]:
    """Unreviewed answers with an unsupported sentence or negative feedback, newest first."""
    unsupported = AnswerSentence.objects.filter(
        answer=OuterRef("pk"), verdict=AnswerSentence.Verdict.UNSUPPORTED
    )
    disliked = Feedback.objects.filter(question__answer=OuterRef("pk"), rating=Feedback.Rating.DOWN)
    return (
        reviewable_answers(user)
        .filter(review__isnull=True)
        .annotate(unsupported=Exists(unsupported), negative=Exists(disliked))
        .filter(Q(unsupported=True) | Q(negative=True))
        .order_by("-created_at")
    )


@transaction.atomic
def review_answer(
    answer: Answer, *, verdict: str, corrected_text: str = "", reviewer, request=None
) -> Review:
    """Record a reviewer's verdict; a corrected answer needs its text, which askers then see."""
    corrected_text = corrected_text.strip()
    if verdict not in Verdict.values:
        raise InvalidReview(f"verdict must be one of {', '.join(Verdict.values)}")
    if verdict == Verdict.CORRECTED and not corrected_text:
        raise InvalidReview("write the right answer to correct this one")
    review, _ = Review.objects.update_or_create(
        answer=answer,
        defaults={
            "verdict": verdict,
            "corrected_text": corrected_text if verdict == Verdict.CORRECTED else "",
            "reviewer": reviewer,
        },
    )
    audit.record(action="review", actor=reviewer, target=answer, request=request, verdict=verdict)
    return review
