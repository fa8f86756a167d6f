"""A corpus of hostile and broken files uploaded through the API and ingested by a real worker:
every one ends as a failed job with the reason its parser gave (never the catch-all for an
unexpected error, never a 500), nothing of them reaches the index, and the worker goes on to index
the good document sent after them."""

import codecs
import io
import random
import re
import time

import pytest

from kb.models import Chunk, Document
from tests.ingestion.factories import (
    docx_bytes,
    encrypted_pdf_bytes,
    pdf_bytes,
    pptx_bytes,
    with_part_replaced,
    xlsx_bytes,
    zip_bytes,
)

pytestmark = pytest.mark.django_db(transaction=True)

OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
GOOD = b"# Travel\n\nTrain tickets are booked through the travel desk at least a week ahead.\n"


def billion_laughs() -> bytes:
    entities = b'<!ENTITY lol0 "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (level, b"&lol%d;" % (level - 1) * 10) for level in range(1, 10)
    )

    def explode(xml):
        body = xml.split(b"?>", 1)[1].replace(b"PLACEHOLDER", b"&lol9;")
        return b'<?xml version="1.0"?>\n<!DOCTYPE w:document [%s]>%s' % (entities, body)

    return with_part_replaced(
        docx_bytes(lambda d: d.add_paragraph("PLACEHOLDER")), "word/document.xml", explode
    )


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


# (file name, content, what the job's error must say)
CORPUS = [
    ("contract.docx", random.Random(1).randbytes(20_000), "not recognised"),
    ("noise.bin", random.Random(2).randbytes(4096), "not recognised"),
    ("half.pdf", truncated(pdf_bytes([["Some text"]] * 3)), "incomplete"),
    ("garbage.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 20 + b"\n%%EOF\n", "looks like a PDF"),
    ("locked.pdf", encrypted_pdf_bytes(user_password="secret"), "password-protected"),
    ("scan.pdf", pdf_bytes([[], []]), "OCR is not supported"),
    ("half.docx", truncated(docx_bytes(lambda d: d.add_paragraph("Some text"))), ""),
    ("half.pptx", truncated(pptx_bytes([("Title", ["Some text"])])), ""),
    ("half.xlsx", truncated(xlsx_bytes({"Sheet": [["Some", "text"]] * 100})), ""),
    (
        "bomb.docx",
        zip_bytes({"word/document.xml": b"<w:document/>", "word/media/i.png": bytes(32 << 20)}),
        "zip bomb",
    ),
    ("parts.xlsx", zip_bytes({f"xl/part{n}.xml": b"" for n in range(10_001)}), "parts"),
    ("archive.zip", zip_bytes({"mimetype": b"application/vnd.oasis.opendocument.text"}), "ZIP archive"),
    ("laughs.docx", billion_laughs(), "amplification"),
    (
        "salaries.xlsx",
        OLE + bytes(512) + "EncryptedPackage".encode("utf-16-le") + bytes(512),
        "password-protected",
    ),
    ("old.doc", OLE + bytes(1024), ".docx"),
    ("photo.png", b"\x89PNG\r\n\x1a\n" + random.Random(3).randbytes(64), "OCR"),
    (
        "deep.html",
        b"<html><body>" + b"<div>" * 100_000 + b"deep" + b"</div>" * 100_000 + b"</body></html>",
        "nested",
    ),
    ("scripts.html", b"<html><body><script>alert(1)</script></body></html>", ""),
    ("blank.txt", b" \n\t\r\n ", ""),
    ("utf16.txt", "plain words".encode("utf-16-le"), ""),
    ("bom.txt", codecs.BOM_UTF8 + b"caf\xe9", "UTF-8 byte-order mark"),
]


def upload(client, name: str, data: bytes):
    file = io.BytesIO(data)
    file.name = name
    return client.post("/api/v1/documents", {"collection": "HR", "file": file}, format="multipart")


def ended(client, job_ids: list[int], timeout: float = 300) -> dict[int, dict]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = {job_id: client.get(f"/api/v1/jobs/{job_id}").json() for job_id in job_ids}
        if all(job["state"] in ("done", "failed") for job in jobs.values()):
            return jobs
        assert time.monotonic() < deadline, {j: job["state"] for j, job in jobs.items()}
        time.sleep(0.5)


def test_every_hostile_upload_fails_cleanly_and_the_worker_goes_on(api, curator, celery_worker, settings):
    settings.KB_MAX_UPLOAD_BYTES = 1 << 20
    client = api(curator)
    # Refused at the door: nothing stored, a 400 with the reason.
    for name, data, reason in [
        ("empty.txt", b"", "the file is empty"),
        ("huge.txt", b"x" * ((1 << 20) + 1), "larger than the limit of 1 MB"),
    ]:
        response = upload(client, name, data)
        assert response.status_code == 400 and reason in response.json()["error"]["message"]

    settings.KB_MAX_UPLOAD_BYTES = 64 << 20  # the zip bomb is larger than 1 MB before it is unpacked
    accepted = {}
    for name, data, reason in CORPUS:
        response = upload(client, name, data)
        assert response.status_code == 202, (name, response.json())
        accepted[response.json()["job"]["id"]] = (name, reason)
    good = upload(client, "travel.md", GOOD)
    assert good.status_code == 202

    jobs = ended(client, [*accepted, good.json()["job"]["id"]])
    for job_id, (name, reason) in accepted.items():
        job = jobs[job_id]
        assert job["state"] == "failed", name
        assert job["error"] and reason in job["error"], (name, job["error"])
        assert not re.search(r"could not process the file|Traceback", job["error"]), (
            name,
            job["error"],
        )
    assert jobs[good.json()["job"]["id"]]["state"] == "done"
    assert Document.objects.filter(status="failed").count() == len(CORPUS)
    assert Chunk.objects.exclude(version__document__source="travel.md").count() == 0
    hits = client.post("/api/v1/search", {"query": "train tickets travel desk"}, format="json").json()
    assert [hit["document"]["title"] for hit in hits["results"]] == ["Travel"]
