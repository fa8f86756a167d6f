"""The REST API end to end: real tokens, real ingestion and search, every response checked
against the OpenAPI schema the API serves."""

import io
import re

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.staticfiles import finders
from openapi_spec_validator import validate as validate_openapi

from kb.models import AuditEvent, Collection, Document, DocumentVersion
from kb.services.ingestion import process_version
from tests.test_search_access import ingest

pytestmark = pytest.mark.django_db

LEAVE = b"# Annual leave\n\nEmployees may carry over five days of annual leave into the next year.\n"
PAYROLL = b"# Payroll\n\nSalaries are paid on the 25th of each month.\n"
TRAVEL = b"# Travel\n\nTrain tickets are booked through the travel desk at least a week ahead.\n"


@pytest.fixture
def org():
    hr, finance = Collection.objects.create(name="HR"), Collection.objects.create(name="Finance")
    staff, curators, accountants = (
        Group.objects.create(name=n) for n in ("staff", "hr-curators", "accountants")
    )
    hr.reader_groups.add(staff)
    hr.curator_groups.add(curators)
    finance.reader_groups.add(accountants)
    alice = User.objects.create_user("alice", password="pw-alice-123")
    alice.groups.add(staff)
    carol = User.objects.create_user("carol", password="pw-carol-123")
    carol.groups.add(curators)
    bob = User.objects.create_user("bob", password="pw-bob-123")
    bob.groups.add(accountants)
    leave, payroll = ingest(hr, "leave.md", LEAVE), ingest(finance, "payroll.md", PAYROLL)
    return {"payroll": payroll} | {
        "hr": hr,
        "finance": finance,
        "alice": alice,
        "carol": carol,
        "bob": bob,
        "leave": leave,
    }


def error_code(response) -> str:
    return response.json()["error"]["code"]


# --- the schema and its docs -------------------------------------------------------------------


def test_the_schema_is_valid_openapi_3_1_and_covers_every_endpoint(client):
    schema = client.get("/api/v1/openapi.json").json()
    validate_openapi(schema)
    assert schema["openapi"] == "3.1.0"
    assert set(schema["paths"]) == {
        f"/api/v1/{path}"
        for path in [
            "collections",
            "documents",
            "documents/{id}",
            "documents/{id}/versions",
            "jobs",
            "jobs/{id}",
            "search",
            "ask",
            "questions",
            "questions/{id}",
            "questions/{id}/feedback",
            "conversations",
            "conversations/{id}",
            "batches",
            "batches/{id}",
        ]
    }
    assert schema["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token from the console or `./run manage create_token USER`.",
    }


def test_the_docs_page_serves_swagger_ui_from_our_own_static_files(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/api/v1/openapi.json" in html and "swagger-ui" in html
    assert "cdn" not in html.lower()  # the network is closed on premises: nothing from outside
    scripts = re.findall(r'<script src="/static/([^"]+)"', html)
    assert scripts and all(finders.find(script) for script in scripts)  # collectstatic serves them


# --- authentication and errors -------------------------------------------------------------------


def test_requests_without_a_valid_token_get_401_with_a_code(api, org):
    anonymous = api()
    response = anonymous.get("/api/v1/collections")
    assert response.status_code == 401 and error_code(response) == "not_authenticated"
    assert response["WWW-Authenticate"] == "Bearer"
    anonymous.credentials(HTTP_AUTHORIZATION="Bearer kb_not-a-real-token")
    response = anonymous.get("/api/v1/collections")
    assert response.status_code == 401 and error_code(response) == "invalid_token"
    alice = api(org["alice"])
    org["alice"].is_active = False
    org["alice"].save()
    assert alice.get("/api/v1/collections").status_code == 401


def test_malformed_requests_get_json_errors_with_stable_codes(api, org, client):
    alice = api(org["alice"])
    response = alice.post("/api/v1/search", data="{not json", content_type="application/json")
    assert response.status_code == 400 and error_code(response) == "malformed_request"
    response = alice.post("/api/v1/search", data="query=leave", content_type="text/plain")
    assert response.status_code == 415 and error_code(response) == "unsupported_media_type"
    response = alice.post("/api/v1/search", {"query": "leave", "top_k": 0, "mode": "fuzzy"}, format="json")
    assert response.status_code == 400 and error_code(response) == "invalid_request"
    assert set(response.json()["error"]["fields"]) == {"top_k", "mode"}
    response = alice.post("/api/v1/search", {"query": 42}, format="json")  # coerced to "42": a query
    assert response.status_code == 200
    response = alice.post("/api/v1/search", {"query": ["a", "list"]}, format="json")
    assert response.status_code == 400 and error_code(response) == "invalid_request"
    response = alice.delete("/api/v1/search")
    assert response.status_code == 405 and error_code(response) == "method_not_allowed"
    unknown = client.get("/api/v1/no-such-thing")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


# --- collections, documents, jobs ----------------------------------------------------------------


def test_collections_are_those_the_caller_may_read_narrowed_by_the_token(api, org):
    listed = api(org["carol"]).get("/api/v1/collections").json()
    assert listed["count"] == 1
    assert [(c["name"], c["documents"], c["can_curate"]) for c in listed["results"]] == [("HR", 1, True)]
    alice = api(org["alice"]).get("/api/v1/collections").json()["results"]
    assert [(c["name"], c["can_curate"]) for c in alice] == [("HR", False)]
    root = User.objects.create_superuser("root", password="pw-root-123")
    assert [c["name"] for c in api(root).get("/api/v1/collections").json()["results"]] == ["Finance", "HR"]
    limited = api(root, collections=[org["finance"]]).get("/api/v1/collections").json()["results"]
    assert [c["name"] for c in limited] == ["Finance"]


def test_documents_of_unreadable_collections_are_404_not_403(api, org):
    alice = api(org["alice"])
    listed = alice.get("/api/v1/documents").json()
    assert [d["title"] for d in listed["results"]] == ["Annual leave"]
    assert listed["results"][0]["latest_job"]["state"] == "done"
    payroll = org["payroll"].pk
    for url in (f"/api/v1/documents/{payroll}", f"/api/v1/documents/{payroll}/versions"):
        response = alice.get(url)
        assert response.status_code == 404 and error_code(response) == "not_found"
    job = org["payroll"].current_version_id
    assert alice.get(f"/api/v1/jobs/{job}").status_code == 404
    assert alice.delete(f"/api/v1/documents/{payroll}").status_code == 404
    assert Document.objects.filter(pk=payroll).exists()


def test_a_curator_uploads_follows_the_job_and_gets_a_new_version(api, org):
    carol = api(org["carol"])
    response = carol.post("/api/v1/documents", {"collection": "HR"}, format="multipart")
    assert response.status_code == 400 and "file" in response.json()["error"]["fields"]
    upload = named_file("travel.md", TRAVEL)
    response = carol.post("/api/v1/documents", {"collection": "HR", "file": upload}, format="multipart")
    assert response.status_code == 202
    body = response.json()
    assert body["created"] is True and body["job"]["state"] == "queued" and body["job"]["number"] == 1
    job_url = f"/api/v1/jobs/{body['job']['id']}"
    process_version(body["job"]["id"])  # what the worker runs
    job = carol.get(job_url).json()
    assert job["state"] == "done" and job["chunks_done"] == job["chunks_total"] > 0 and job["current"]
    again = carol.post(
        "/api/v1/documents", {"collection": "HR", "file": named_file("travel.md", TRAVEL)}, format="multipart"
    )
    assert again.status_code == 200 and again.json()["created"] is False
    changed = TRAVEL + b"\nFlights need the manager's approval.\n"
    response = carol.post(
        "/api/v1/documents",
        {"collection": "HR", "file": named_file("travel.md", changed)},
        format="multipart",
    )
    assert response.status_code == 202 and response.json()["job"]["number"] == 2
    document = response.json()["document"]["id"]
    versions = carol.get(f"/api/v1/documents/{document}/versions").json()["results"]
    assert [(v["number"], v["state"], v["current"]) for v in versions] == [
        (2, "queued", False),
        (1, "done", True),
    ]
    queued = carol.get("/api/v1/jobs", {"state": "queued"}).json()["results"]
    assert [job["id"] for job in queued] == [versions[0]["id"]]


def named_file(name: str, data: bytes) -> io.BytesIO:
    upload = io.BytesIO(data)
    upload.name = name
    return upload


def test_uploads_need_a_curator_with_a_writable_token(api, org):
    def upload(client, collection="HR", data=TRAVEL):
        return client.post(
            "/api/v1/documents",
            {"collection": collection, "file": named_file("travel.md", data)},
            format="multipart",
        )

    response = upload(api(org["alice"]))
    assert response.status_code == 403 and error_code(response) == "permission_denied"
    response = upload(api(org["carol"], read_only=True))
    assert response.status_code == 403 and error_code(response) == "permission_denied"
    response = upload(api(org["carol"]), collection="Finance")
    assert response.status_code == 400 and error_code(response) == "unknown_collection"
    assert "no collection named 'Finance'" in response.json()["error"]["message"]
    response = upload(api(org["carol"]), data=b"")
    assert response.status_code == 400 and error_code(response) == "upload_rejected"
    assert response.json()["error"]["message"] == "the file is empty"
    assert not DocumentVersion.objects.filter(original_name="travel.md").exists()


def test_a_curator_deletes_a_document_audited_and_gone_from_search(api, org):
    leave = org["leave"].pk
    alice = api(org["alice"])
    assert alice.post("/api/v1/search", {"query": "annual leave"}, format="json").json()["results"]
    response = alice.delete(f"/api/v1/documents/{leave}")
    assert response.status_code == 403
    assert api(org["carol"], read_only=True).delete(f"/api/v1/documents/{leave}").status_code == 403
    response = api(org["carol"]).delete(f"/api/v1/documents/{leave}")
    assert response.status_code == 204
    assert not Document.objects.filter(pk=leave).exists()
    event = AuditEvent.objects.get(action="delete", object_type="kb.Document")
    assert (event.actor_name, event.object_id) == ("carol", str(leave))
    assert alice.post("/api/v1/search", {"query": "annual leave"}, format="json").json()["results"] == []


# --- search --------------------------------------------------------------------------------------


def test_search_returns_readable_passages_with_exact_offsets(api, org):
    alice = api(org["alice"])
    response = alice.post("/api/v1/search", {"query": "carry over annual leave", "top_k": 5}, format="json")
    assert response.status_code == 200
    results = response.json()["results"]
    assert results and {r["collection"] for r in results} == {"HR"}
    best = results[0]
    parsed = org["leave"].current_version.parsed_text
    assert parsed[best["char_start"] : best["char_end"]] == best["text"]
    assert best["document"] == {"id": org["leave"].pk, "title": "Annual leave"}
    for mode in ("bm25", "dense"):
        found = alice.post("/api/v1/search", {"query": "annual leave", "mode": mode}, format="json").json()
        assert found["results"][0]["chunk"] == best["chunk"]
    response = alice.post("/api/v1/search", {"query": "salaries", "collections": ["Finance"]}, format="json")
    assert response.status_code == 400 and error_code(response) == "unknown_collection"
    response = alice.post("/api/v1/search", {"query": "   "}, format="json")
    assert response.status_code == 400 and error_code(response) in ("invalid_request", "invalid_query")
    response = alice.post("/api/v1/search", {"query": "the of and"}, format="json")
    assert response.status_code in (200, 400)


def test_a_token_limited_to_collections_searches_only_those(api, org):
    root = User.objects.create_superuser("root", password="pw-root-123")
    finance_only = api(root, collections=[org["finance"]])
    found = finance_only.post("/api/v1/search", {"query": "annual leave salaries"}, format="json").json()
    assert {r["collection"] for r in found["results"]} == {"Finance"}
    response = finance_only.post("/api/v1/search", {"query": "leave", "collections": ["HR"]}, format="json")
    assert response.status_code == 400 and error_code(response) == "unknown_collection"
