"""The search cache while Redis cannot be reached: searches are computed without it, and a change
that could not invalidate cached results does so as soon as Redis answers again.
(The whole stack with Redis killed: tests/test_faults.py.)"""

import time

import pytest

from kb.models import Collection
from retrieval import cache
from retrieval.index import NewPassage, add_passages
from retrieval.search import search

pytestmark = pytest.mark.django_db

PARAMETERS = {"query": "rent"}


def unreachable(caches: dict) -> dict:
    return {"default": {**caches["default"], "LOCATION": "unix:///nonexistent/redis.sock"}}


def test_searches_work_without_redis_and_a_missed_invalidation_is_stored_once_it_is_back(
    settings, django_capture_on_commit_callbacks
):
    scope = Collection.objects.create(name="HR").pk
    reachable = settings.CACHES
    before = cache.result_key(PARAMETERS, [scope])
    assert cache.result_key(PARAMETERS, [scope]) == before  # the scope's version is kept

    settings.CACHES = unreachable(reachable)
    # Reads miss, writes are skipped, and each key is new: no result cached before can be read.
    assert cache.get(before) is None
    cache.put(before, ["stale"])
    assert cache.result_key(PARAMETERS, [scope]) not in (before, cache.result_key(PARAMETERS, [scope]))
    with django_capture_on_commit_callbacks(execute=True):
        add_passages(scope, [NewPassage(id=1, text="Tenants pay the rent monthly.", embedding=None)])
    assert [hit.passage_id for hit in search("rent", scopes=[scope], mode="bm25")] == [1]

    settings.CACHES = reachable
    deadline = time.monotonic() + 10
    while cache._retrier is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cache._retrier is None and not cache._pending_keys
    # The new version reached Redis: results cached for the old contents are not read again.
    after = cache.result_key(PARAMETERS, [scope])
    assert after != before and cache.result_key(PARAMETERS, [scope]) == after


def test_sensitive_terms_are_screened_from_the_table_while_redis_is_away(
    settings, django_capture_on_commit_callbacks
):
    from kb.models import SensitiveTerm
    from kb.services.sensitive_terms import current_matcher, terms_version

    settings.KB_SENSITIVE_TERMS_REFRESH_SECONDS = 0
    settings.CACHES = unreachable(settings.CACHES)
    assert terms_version() != terms_version()  # nothing computed while Redis is away can be reused
    with django_capture_on_commit_callbacks(execute=True):  # the change's notice cannot be stored
        SensitiveTerm.objects.create(term="Project Falcon", action="block")
    assert current_matcher().screen("About Project Falcon.").blocked
