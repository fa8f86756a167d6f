"""Search results cached in Redis, keyed by the query, the searcher's scopes and their index versions.

Every scope has a version token in the cache; any change to a scope's passages gives it a new
token once the change commits, so results cached for the old contents are never read again
(they expire on their own). A token that is missing (a flushed or new cache) is replaced by a fresh
one, never by a default that an old entry could still be stored under.

The cache is only a cache: while Redis cannot be reached, reads miss, writes are skipped and keys
get fresh version tokens (so they match nothing), and searches are computed from the index. A new
version token that could not be stored is stored as soon as Redis answers again (retried in the
background), so results cached before the change are not read for long after Redis is back.
"""

import hashlib
import json
import logging
import threading
import time
import uuid

from django.core.cache import cache
from django.db import transaction
from redis import RedisError

logger = logging.getLogger(__name__)

RESULT_SECONDS = 3600
# How often an invalidation that Redis missed is tried again.
RETRY_SECONDS = 0.5

_pending_keys: set[str] = set()  # version tokens to renew that Redis missed
_pending_lock = threading.Lock()
_retrier: threading.Thread | None = None


def _version_key(scope: int) -> str:
    return f"retrieval:scope-version:{scope}"


def scopes_changed(scopes: set[int]) -> None:
    """Invalidate the cached results of every search over any of `scopes`, once the change commits."""
    keys = {_version_key(scope) for scope in scopes}
    if keys:
        transaction.on_commit(lambda: renew_tokens(keys))


def renew_tokens(keys: set[str]) -> None:
    """Give each key a new version token now, or as soon as Redis answers again (retried in a
    background thread), so that what was cached under the old tokens is not read again."""
    try:
        cache.set_many({key: uuid.uuid4().hex for key in keys}, timeout=None)
    except RedisError as error:
        logger.warning("cache unreachable, renewing %s later: %s", sorted(keys), error)
        _retry_later(keys)


def _retry_later(keys: set[str]) -> None:
    global _retrier
    with _pending_lock:
        _pending_keys.update(keys)
        if _retrier is None:
            _retrier = threading.Thread(target=_retry_pending, name="cache-invalidation", daemon=True)
            _retrier.start()


def _retry_pending() -> None:
    global _retrier
    while True:
        time.sleep(RETRY_SECONDS)
        with _pending_lock:
            keys = set(_pending_keys)
        try:
            cache.set_many({key: uuid.uuid4().hex for key in keys}, timeout=None)
        except RedisError:
            continue
        logger.info("cache reachable again: %s renewed", sorted(keys))
        with _pending_lock:
            _pending_keys.difference_update(keys)
            if not _pending_keys:
                _retrier = None
                return


def tokens(keys: list[str]) -> list[str]:
    """The current version token of each key; a missing one (a new or flushed cache) gets a fresh
    token, never a default an old entry could still be stored under. While Redis is unreachable,
    fresh random tokens that nothing is or will be stored under."""
    try:
        versions = cache.get_many(keys)
        for key in keys:
            if key not in versions:
                cache.add(key, uuid.uuid4().hex, timeout=None)  # another process may win the race
                versions[key] = cache.get(key)
    except RedisError as error:
        logger.warning("cache unreachable, working without it: %s", error)
        return [uuid.uuid4().hex for _ in keys]
    return [versions[key] for key in keys]


def result_key(parameters: dict, scopes: list[int], kind: str = "result") -> str:
    """The cache key of a search (or another `kind` of value computed from the index): its
    parameters (query included), scopes and their versions."""
    scopes = sorted(set(scopes))
    identity = json.dumps(
        [parameters, scopes, tokens([_version_key(scope) for scope in scopes])],
        sort_keys=True,
        ensure_ascii=False,
    )
    return f"retrieval:{kind}:" + hashlib.sha256(identity.encode()).hexdigest()


def get(key: str):
    """The cached value, or None (also while the cache is unreachable)."""
    try:
        return cache.get(key)
    except RedisError:
        return None


def put(key: str, value) -> None:
    """Cache a value; skipped while the cache is unreachable."""
    try:
        cache.set(key, value, timeout=RESULT_SECONDS)
    except RedisError:
        pass


def clear(kind: str | None = None) -> None:
    """Forget every cached value of `kind` ("result", "answer"), e.g. before a benchmark; without a
    kind, everything retrieval keeps in the cache, scope versions included."""
    client = cache._cache.get_client(write=True)
    pattern = f"retrieval:{kind}:*" if kind else "retrieval:*"
    keys = list(client.scan_iter(match=cache.make_key(pattern)))
    if keys:
        client.delete(*keys)
