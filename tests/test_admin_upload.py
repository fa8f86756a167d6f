"""Curators upload several files at once from the admin console."""

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile

from kb.models import AuditEvent, Collection, DocumentVersion

pytestmark = pytest.mark.django_db


def upload_url(collection):
    return f"/admin/kb/collection/{collection.pk}/upload/"


def files(*names):
    return [SimpleUploadedFile(name, f"# {name}\n\nContent of {name}.".encode()) for name in names]


def test_curator_uploads_several_files_as_queued_jobs(
    client, django_user_model, django_capture_on_commit_callbacks
):
    curators = Group.objects.create(name="legal-curators")
    collection = Collection.objects.create(name="Contracts")
    collection.curator_groups.add(curators)
    curator = django_user_model.objects.create_user(username="carla", password="pw-carla-123", is_staff=True)
    curator.groups.add(curators)
    client.force_login(curator)
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(upload_url(collection), {"files": files("nda.md", "msa.md")})
    assert response.status_code == 302
    assert "documentversion" in response["Location"]
    versions = DocumentVersion.objects.filter(document__collection=collection)
    assert sorted(v.original_name for v in versions) == ["msa.md", "nda.md"]
    assert {v.job_state for v in versions} == {"queued"} and len(queued) == 2
    assert AuditEvent.objects.filter(action="upload", actor=curator).count() == 2


def test_staff_who_do_not_curate_the_collection_cannot_upload(client, django_user_model):
    collection = Collection.objects.create(name="Board minutes")
    reader = django_user_model.objects.create_user(username="rob", password="pw-rob-12345", is_staff=True)
    client.force_login(reader)
    assert client.get(upload_url(collection)).status_code == 403
    assert client.post(upload_url(collection), {"files": files("minutes.md")}).status_code == 403
    assert not DocumentVersion.objects.exists()


def test_rejected_files_are_reported_and_the_rest_uploaded(client, admin_user, settings):
    settings.KB_MAX_UPLOAD_BYTES = 100
    collection = Collection.objects.create(name="Contracts")
    client.force_login(admin_user)
    big = SimpleUploadedFile("big.txt", b"x" * 500)
    response = client.post(upload_url(collection), {"files": [big, *files("ok.md")]}, follow=True)
    text = response.content.decode().lower()
    assert "big.txt: the file is larger than the limit" in text
    assert list(DocumentVersion.objects.values_list("original_name", flat=True)) == ["ok.md"]
