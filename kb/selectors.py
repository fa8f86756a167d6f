"""Read-side queries shared by search, answers, the API and the console."""

from django.db.models import F, Max, Min, Q, QuerySet

from kb.models import Chunk, Collection


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
