"""What an API caller may reach: their user's rights, narrowed by the token's limits.

The user's rules live in kb.selectors and kb.services.search; a token can only take rights away
(read-only, or fewer collections), never add any.
"""

from django.db.models import QuerySet
from rest_framework.permissions import SAFE_METHODS, BasePermission

from kb.models import ApiToken, Collection
from kb.selectors import readable_collections
from kb.services.search import UnknownCollection


def _token(request) -> ApiToken | None:
    return request.auth if isinstance(request.auth, ApiToken) else None


def _token_collection_ids(request) -> set[int] | None:
    token = _token(request)
    if token is None:
        return None
    ids = set(token.collections.values_list("pk", flat=True))
    return ids or None


def visible_collections(request) -> QuerySet[Collection]:
    collections = readable_collections(request.user)
    limited = _token_collection_ids(request)
    return collections if limited is None else collections.filter(pk__in=limited)


def collection_names(request, requested: list[str] | None) -> list[str] | None:
    """The collections a search or question of this caller covers: the requested ones, checked
    against the token's limits (the services check them against the user's rights), or None for all."""
    if _token_collection_ids(request) is None:
        return requested
    allowed = set(visible_collections(request).values_list("name", flat=True))
    if requested is None:
        return sorted(allowed)
    for name in requested:
        if name not in allowed:
            raise UnknownCollection(f"no collection named {name!r}")
    return requested


class WritableToken(BasePermission):
    """Read-only tokens may search, ask (in conversations too) and give feedback, but not upload or
    delete documents, nor rename or delete conversations."""

    message = "this token is read-only"

    def has_permission(self, request, view):
        token = _token(request)
        return request.method in SAFE_METHODS or token is None or not token.read_only
