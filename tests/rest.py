"""The REST API as a client sees it, for tests of whole deployments (tests/test_faults.py,
tests/test_scale_out.py): an administrator's client and what every ingested collection must
satisfy, checked through the API and the database."""

import functools
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from kb.ingestion.document import ParsedDocument
from kb.ingestion.parsing import parse_document
from kb.services.ingestion import chunk_windows

DOCS = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev" / "docs"
ENDED = ("done", "failed")
# Runs SQL on the deployment's database: (query, *params) -> rows.
Sql = Callable[..., list[tuple]]


class Api:
    """The stack's REST API with an administrator's token."""

    def __init__(self, base_url: str, token: str):
        self.client = httpx.Client(
            base_url=f"{base_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=120
        )

    def get(self, path: str, **params) -> dict:
        response = self.client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def upload(self, collection: str, name: str) -> httpx.Response:
        files = {"file": (name, (DOCS / name).read_bytes(), "text/markdown")}
        return self.client.post("/documents", data={"collection": collection}, files=files)

    def search(self, query: str, collection: str) -> httpx.Response:
        return self.client.post("/search", json={"query": query, "collections": [collection]})

    def ask(self, question: str, collection: str) -> httpx.Response:
        return self.client.post("/ask", json={"question": question, "collections": [collection]})

    def jobs(self, collection: str) -> list[dict]:
        return self.get("/jobs", collection=collection, page_size=200)["results"]

    def wait_until_jobs_ended(self, collection: str, count: int, timeout: float = 180) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.jobs(collection)
            if len(jobs) >= count and all(job["state"] in ENDED for job in jobs):
                return jobs
            time.sleep(0.5)
        raise AssertionError(f"jobs of {collection} not ended within {timeout} s: {self.jobs(collection)}")


@functools.cache
def parsed(name: str) -> ParsedDocument:
    return parse_document((DOCS / name).read_bytes(), filename=name)


def expected_chunks(names: list[str]) -> dict[str, int]:
    """Chunks each file must have, computed here in the test process with the same settings."""
    return {name: len(chunk_windows(parsed(name))) for name in names}


def heading_of(name: str) -> str:
    return (DOCS / name).read_text().splitlines()[0].lstrip("# ").strip()


def assert_indexed_exactly_once(sql: Sql, api: Api, collection: str, expected: dict[str, int]) -> None:
    """Every file is one ready document with one version, whose job is done with exactly its chunks,
    each ordinal once, each chunk in the search index once; nothing else is in the collection."""
    documents = api.get("/documents", collection=collection, page_size=200)
    assert documents["count"] == len(expected)
    assert sorted(document["source"] for document in documents["results"]) == sorted(expected)
    for document in documents["results"]:
        assert (document["status"], document["current_version"]) == ("ready", 1), document
    jobs = api.jobs(collection)
    assert len(jobs) == len(expected)  # one version each: no upload was taken twice
    assert {job["original_name"]: (job["state"], job["current"], job["chunks_done"]) for job in jobs} == {
        name: ("done", True, count) for name, count in expected.items()
    }
    assert all(job["chunks_total"] == job["chunks_done"] for job in jobs)
    per_document = sql(
        "SELECT d.source, count(c.id), count(DISTINCT c.ordinal), min(c.ordinal), max(c.ordinal)"
        " FROM kb_document d JOIN kb_collection k ON k.id = d.collection_id"
        " LEFT JOIN kb_chunk c ON c.version_id = d.current_version_id WHERE k.name = %s GROUP BY d.source",
        collection,
    )
    assert {row[0]: row[1:] for row in per_document} == {
        name: (count, count, 0, count - 1) for name, count in expected.items()
    }
    total = sum(expected.values())
    (scope,) = sql("SELECT id FROM kb_collection WHERE name = %s", collection)[0]
    all_chunks = sql(
        "SELECT count(*) FROM kb_chunk c JOIN kb_documentversion v ON v.id = c.version_id"
        " JOIN kb_document d ON d.id = v.document_id WHERE d.collection_id = %s",
        scope,
    )
    assert all_chunks == [(total,)]
    passages = sql(
        "SELECT count(*), count(c.id) FROM retrieval_passage p LEFT JOIN kb_chunk c ON c.id = p.id"
        " WHERE p.scope = %s",
        scope,
    )
    assert passages == [(total, total)]
    assert sql("SELECT passages FROM retrieval_scopestats WHERE scope = %s", scope) == [(total,)]
