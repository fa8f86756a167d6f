"""Read-side queries shared by search, answers, the API and the console."""

from django.db.models import Count, F, Max, Min, Q, QuerySet
from django.db.models.functions import Substr

from kb.models import (
    Answer,
    Chunk,
    Citation,
    Collection,
    Conversation,
    DocumentVersion,
    Feedback,
    Question,
    Review,
)


def current_chunks() -> QuerySet[Chunk]:
    """Chunks of each document's current version only.

    A new version's chunks are stored beside the old ones while it is embedded; they become
    visible in the same transaction that makes it current, so readers never see a mix.
    """
    return Chunk.objects.filter(version_id=F("version__document__current_version_id"))


def can_curate(user, collection) -> bool:
    """Superusers curate everything; others curate collections one of their groups curates."""
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    return collection.curator_groups.filter(pk__in=user.groups.values("pk")).exists()


def curated_collections(user) -> QuerySet[Collection]:
    """Collections the user curates: superusers all; others those a group of theirs curates."""
    if user is None or not user.is_active:
        return Collection.objects.none()
    if user.is_superuser:
        return Collection.objects.all()
    return Collection.objects.filter(curator_groups__in=user.groups.values("pk")).distinct()


def readable_collections(user) -> QuerySet[Collection]:
    """Collections the user may read: superusers all; others those a group of theirs reads or curates."""
    if user is None or not user.is_active:
        return Collection.objects.none()
    if user.is_superuser:
        return Collection.objects.all()
    groups = user.groups.values("pk")
    return Collection.objects.filter(Q(reader_groups__in=groups) | Q(curator_groups__in=groups)).distinct()


def context_window(chunk: Chunk, neighbours: int = 1) -> tuple[int, int, str]:
    """The chunk widened by `neighbours` chunks on each side of the same version, as (start, end,
    text) in the version's parsed text, for a generator that needs more than the passage found.
    Overlapping windows are joined, not repeated, because the span is cut from the parsed text."""
    around = Chunk.objects.filter(
        version_id=chunk.version_id,
        ordinal__gte=chunk.ordinal - neighbours,
        ordinal__lte=chunk.ordinal + neighbours,
    ).aggregate(start=Min("char_start"), end=Max("char_end"))
    start, end = around["start"], around["end"]
    return start, end, chunk.version.parsed_text[start:end]


def own_questions(user) -> QuerySet[Question]:
    """The user's own questions, newest first: nobody else's history is ever listed."""
    return Question.objects.filter(user=user).select_related("answer", "feedback")


def own_conversations(user) -> QuerySet[Conversation]:
    """The user's own threads, the last one asked in first, with how many questions each holds:
    a thread opened by anyone else is not found."""
    return (
        Conversation.objects.filter(user=user)
        .annotate(turns=Count("questions"))
        .order_by("-updated_at", "-pk")
    )


def latest_turns(conversation: Conversation, count: int) -> list[Question]:
    """The last `count` questions of a thread, oldest first (a long thread shows its end)."""
    latest = own_questions(conversation.user).filter(conversation=conversation)[:count]
    return list(reversed(latest))


def feedback_on(question: Question) -> Feedback | None:
    """The asker's feedback on the answer (loaded with own_questions' select_related), or None."""
    try:
        return question.feedback
    except Feedback.DoesNotExist:
        return None


def correction_of(answer: Answer) -> Review | None:
    """A reviewer's corrected answer for it, when there is one."""
    return Review.objects.filter(answer=answer, verdict=Review.Verdict.CORRECTED).first()


def disclaimers(citations) -> list[str]:
    """The disclaimers of the collections `citations` (the reader's visible ones) come from, each
    once, by collection name: a collection the reader may no longer read adds none."""
    collections = sorted({citation.collection for citation in citations}, key=lambda row: row.name)
    return list(dict.fromkeys(text for row in collections if (text := row.disclaimer.strip())))


def visible_citations(user) -> QuerySet[Citation]:
    """Citations of answers the user was given, from collections they may still read, each with
    its cited passage (cut in SQL, so a long document's text is never loaded for it)."""
    return (
        Citation.objects.filter(
            answer__questions__user=user, collection__in=readable_collections(user), version__isnull=False
        )
        .distinct()
        .annotate(
            passage=Substr("version__parsed_text", F("char_start") + 1, F("char_end") - F("char_start"))
        )
    )


def passage_in_context(citation: Citation, chars: int) -> tuple[str, str, str]:
    """The cited passage with up to `chars` characters of its document before and after it, cut in
    SQL from the cited version's parsed text."""
    start = max(0, citation.char_start - chars)
    cut = DocumentVersion.objects.filter(pk=citation.version_id).annotate(
        around=Substr("parsed_text", start + 1, citation.char_end + chars - start)
    )
    around = cut.values_list("around", flat=True).first() or ""
    split_at, end_at = citation.char_start - start, citation.char_end - start
    return around[:split_at], around[split_at:end_at], around[end_at:]
