"""Curators edit sensitive terms in the admin console and import them from CSV there."""

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile

from kb.models import AuditEvent, SensitiveTerm

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/kb/sensitiveterm/"
IMPORT = "/admin/kb/sensitiveterm/import/"


def terms_csv(*rows: str) -> SimpleUploadedFile:
    return SimpleUploadedFile("terms.csv", "\n".join(["term,category,action", *rows]).encode(), "text/csv")


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(username="sam", password="pw-sam-12345", is_staff=True)


def test_superuser_imports_terms_from_the_changelist(client, admin_user):
    client.force_login(admin_user)
    assert IMPORT in client.get(CHANGELIST).content.decode()
    response = client.post(
        IMPORT, {"file": terms_csv("falcon,codename,block", "机密,保密,mask")}, follow=True
    )
    assert response.redirect_chain[-1][0] == CHANGELIST
    assert "2 created, 0 updated, 0 unchanged" in response.content.decode()
    assert dict(SensitiveTerm.objects.values_list("term", "action")) == {"falcon": "block", "机密": "mask"}
    event = AuditEvent.objects.get(action="sensitive_terms_import")
    assert (event.actor, event.detail["file"], event.ip_address) == (admin_user, "terms.csv", "127.0.0.1")


def test_a_malformed_file_is_shown_with_its_line_and_nothing_is_imported(client, admin_user):
    client.force_login(admin_user)
    response = client.post(IMPORT, {"file": terms_csv("falcon,codename,block", "eagle,bird,shout")})
    assert response.status_code == 200
    assert "line 3: unknown action &#x27;shout&#x27;" in response.content.decode()
    assert not SensitiveTerm.objects.exists()


def test_staff_without_the_add_permission_cannot_import(client, staff):
    client.force_login(staff)
    assert client.get(IMPORT).status_code == 403
    assert client.post(IMPORT, {"file": terms_csv("falcon,codename,block")}).status_code == 403
    assert not SensitiveTerm.objects.exists()


def test_staff_with_the_add_permission_can_import(client, staff):
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_sensitiveterm", "view_sensitiveterm"])
    )
    client.force_login(staff)
    assert IMPORT in client.get(CHANGELIST).content.decode()
    assert client.post(IMPORT, {"file": terms_csv("falcon,codename,block")}).status_code == 302
    assert SensitiveTerm.objects.filter(term="falcon").exists()


def test_a_term_added_in_the_console_is_audited(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        "/admin/kb/sensitiveterm/add/", {"term": "Project Falcon", "category": "codename", "action": "block"}
    )
    assert response.status_code == 302, response.content
    term = SensitiveTerm.objects.get(term="Project Falcon")
    event = AuditEvent.objects.get(action="create", object_type="kb.SensitiveTerm")
    assert (event.actor, event.object_id) == (admin_user, str(term.pk))


def test_a_term_of_invisible_characters_only_is_refused_in_the_console(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        "/admin/kb/sensitiveterm/add/", {"term": "\u200b\u200b", "category": "", "action": "flag"}
    )
    assert response.status_code == 200
    assert "cannot be empty" in response.content.decode()
    assert not SensitiveTerm.objects.exists()
