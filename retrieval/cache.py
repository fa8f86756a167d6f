"""Search results cached in Redis, keyed by the query, the searcher's scopes and their index versions.

Every scope has a version token in the cache; any change to a scope's passages gives it a new
token once the change commits, so results cached for the old contents are never read again
(they expire on their own). A token that is missing (a flushed or new cache) is replaced by a fresh
one, never by a default that an old entry could still be stored under.
"""

import hashlib
import json
import uuid

from django.core.cache import cache
from django.db import transaction

RESULT_SECONDS = 3600


def _version_key(scope: int) -> str:
    return f"retrieval:scope-version:{scope}"


def scopes_changed(scopes: set[int]) -> None:
    """Invalidate the cached results of every search over any of `scopes`, once the change commits."""
    keys = [_version_key(scope) for scope in scopes]
    if keys:
        transaction.on_commit(lambda: cache.set_many({key: uuid.uuid4().hex for key in keys}, timeout=None))


def _scope_versions(scopes: list[int]) -> list[str]:
    keys = [_version_key(scope) for scope in scopes]
    versions = cache.get_many(keys)
    for key in keys:
        if key not in versions:
            cache.add(key, uuid.uuid4().hex, timeout=None)  # another process may win the race
            versions[key] = cache.get(key)
    return [versions[key] for key in keys]


def result_key(parameters: dict, scopes: list[int], kind: str = "result") -> str:
    """The cache key of a search (or another `kind` of value computed from the index): its
    parameters (query included), scopes and their versions."""
    scopes = sorted(set(scopes))
    identity = json.dumps([parameters, scopes, _scope_versions(scopes)], sort_keys=True, ensure_ascii=False)
    return f"retrieval:{kind}:" + hashlib.sha256(identity.encode()).hexdigest()


def get(key: str):
    return cache.get(key)


def put(key: str, value) -> None:
    cache.set(key, value, timeout=RESULT_SECONDS)


def clear(kind: str | None = None) -> None:
    """Forget every cached value of `kind` ("result", "answer"), e.g. before a benchmark; without a
    kind, everything retrieval keeps in the cache, scope versions included."""
    client = cache._cache.get_client(write=True)
    pattern = f"retrieval:{kind}:*" if kind else "retrieval:*"
    keys = list(client.scan_iter(match=cache.make_key(pattern)))
    if keys:
        client.delete(*keys)
