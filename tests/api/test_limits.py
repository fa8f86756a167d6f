"""Rate limits per user and per token, and upload quotas per collection, through the API (real Redis,
real PostgreSQL, responses checked against the schema)."""

import io
import threading
import time

import pytest
from django.db import connection

from kb.models import AuditEvent, Collection, Document, DocumentVersion
from kb.services.ingestion import UploadRejected, upload_document

pytestmark = pytest.mark.django_db


def search(client):
    return client.post("/api/v1/search", {"query": "annual leave"}, format="json")


def upload(client, name: str, data: bytes):
    file = io.BytesIO(data)
    file.name = name
    return client.post("/api/v1/documents", {"collection": "HR", "file": file}, format="multipart")


def test_searches_over_the_limit_get_429_with_retry_after_per_token(api, curator, settings):
    settings.KB_RATE_LIMITS = "search=3/m"
    first, second = api(curator), api(curator)
    assert [search(first).status_code for _ in range(3)] == [200, 200, 200]
    refused = search(first)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 120
    # Another token of the same user has an allowance of its own, and so has the user's session.
    assert search(second).status_code == 200
    first.credentials()
    first.force_login(curator)
    assert search(first).status_code == 200


def test_retry_after_says_when_the_next_request_is_allowed(api, curator, settings):
    settings.KB_RATE_LIMITS = "search=2/s"
    client = api(curator)
    assert [search(client).status_code for _ in range(2)] == [200, 200]
    refused = search(client)
    assert refused.status_code == 429
    time.sleep(int(refused["Retry-After"]))
    assert search(client).status_code == 200


def test_a_batch_counts_each_of_its_questions(api, curator, settings):
    settings.KB_RATE_LIMITS = "batch=4/h"
    client = api(curator)
    refused = client.post("/api/v1/batches", {"questions": ["a?", "b?", "c?", "d?", "e?"]}, format="json")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert client.post("/api/v1/batches", {"questions": ["a?", "b?"]}, format="json").status_code == 202


def test_uploads_and_asks_are_limited_too(api, curator, settings):
    settings.KB_RATE_LIMITS = "upload=1/h,ask=1/h"
    client = api(curator)
    assert upload(client, "one.md", b"# One\n\nThe first file.\n").status_code == 202
    assert upload(client, "two.md", b"# Two\n\nThe second file.\n").status_code == 429
    assert Document.objects.count() == 1
    settings.ENGINE_URLS = []  # no engine: the ask still answers (with the sources) and still counts
    assert client.post("/api/v1/ask", {"question": "What is it?"}, format="json").status_code == 200
    assert client.post("/api/v1/ask", {"question": "What is it?"}, format="json").status_code == 429


def test_limits_are_let_through_while_redis_is_unreachable(api, curator, settings, caplog):
    settings.KB_RATE_LIMITS = "search=1/h"
    client = api(curator)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "unix:///nonexistent/redis.sock",
        }
    }
    assert [search(client).status_code for _ in range(3)] == [200, 200, 200]
    assert "rate limits not applied" in caplog.text


def test_a_collection_over_its_document_quota_refuses_new_documents_only(api, curator):
    Collection.objects.filter(name="HR").update(max_documents=2)
    client = api(curator)
    assert upload(client, "a.md", b"# A\n\nFirst.\n").status_code == 202
    assert upload(client, "b.md", b"# B\n\nSecond.\n").status_code == 202
    refused = upload(client, "c.md", b"# C\n\nThird.\n")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "upload_rejected"
    assert refused.json()["error"]["message"] == "the collection HR already holds its quota of 2 documents"
    # A new version of a document it holds, and an identical re-upload, are still accepted.
    assert upload(client, "a.md", b"# A\n\nFirst, amended.\n").status_code == 202
    assert upload(client, "b.md", b"# B\n\nSecond.\n").status_code == 200
    assert sorted(Document.objects.values_list("source", flat=True)) == ["a.md", "b.md"]
    assert not AuditEvent.objects.filter(action="upload", object_repr="c").exists()


def test_the_storage_quota_counts_every_kept_file_once(curator):
    hr = Collection.objects.get(name="HR")
    hr.max_bytes = 100
    hr.save()
    upload_document(collection=hr, name="a.md", content=io.BytesIO(b"x" * 60))
    with pytest.raises(UploadRejected, match=r"storage quota of 0.0 MB \(0.0 MB used, this file is 0.0 MB\)"):
        upload_document(collection=hr, name="a.md", content=io.BytesIO(b"y" * 60))
    upload_document(collection=hr, name="b.md", content=io.BytesIO(b"z" * 40))
    assert DocumentVersion.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_cannot_overrun_the_quota():
    hr = Collection.objects.create(name="HR", max_documents=1)
    results = []

    def upload_one(number: int) -> None:
        try:
            upload_document(collection=hr, name=f"{number}.md", content=io.BytesIO(b"# %d\n" % number))
            results.append("accepted")
        except UploadRejected:
            results.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=upload_one, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["accepted", "refused", "refused", "refused"]
    assert Document.objects.count() == 1
