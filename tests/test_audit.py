"""Changes made in the admin console and sign-ins end up in the audit trail."""

import pytest
from django.contrib.auth.models import Group

from kb.models import AuditEvent, Collection

pytestmark = pytest.mark.django_db


def test_creating_a_collection_in_the_admin_is_audited(client, admin_user):
    readers = Group.objects.create(name="legal")
    client.force_login(admin_user)
    response = client.post(
        "/admin/kb/collection/add/",
        {
            "name": "Contracts",
            "description": "",
            "preset": "general",
            "reader_groups": [readers.pk],
            "curator_groups": [],
        },
    )
    assert response.status_code == 302, response.content
    collection = Collection.objects.get(name="Contracts")
    assert list(collection.reader_groups.all()) == [readers]
    event = AuditEvent.objects.get(action="create", object_type="kb.Collection")
    assert (event.actor, event.object_id, event.ip_address) == (
        admin_user,
        str(collection.pk),
        "127.0.0.1",
    )


def test_changing_group_membership_in_the_admin_is_audited(client, admin_user):
    group = Group.objects.create(name="finance")
    client.force_login(admin_user)
    response = client.post(
        f"/admin/auth/user/{admin_user.pk}/change/",
        {
            "username": admin_user.username,
            "is_active": "on",
            "is_staff": "on",
            "is_superuser": "on",
            "groups": [group.pk],
            "last_login_0": "",
            "last_login_1": "",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content
    event = AuditEvent.objects.get(action="update", object_type="auth.User")
    assert "Groups" in event.detail["change"][0]["changed"]["fields"]


def test_deleting_a_collection_in_the_admin_is_audited(client, admin_user):
    collection = Collection.objects.create(name="Old policies")
    client.force_login(admin_user)
    response = client.post(f"/admin/kb/collection/{collection.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Collection.objects.filter(pk=collection.pk).exists()
    assert AuditEvent.objects.filter(action="delete", object_repr="Old policies").exists()


def test_sign_ins_and_failures_are_audited_without_the_password(client, admin_user):
    assert not client.login(username="root", password="wrong password")
    assert client.login(username="root", password="s3cret-pass-word")
    failed = AuditEvent.objects.get(action="sign_in_failed")
    assert failed.actor_name == "root"
    assert "wrong password" not in str(failed.detail)
    assert AuditEvent.objects.filter(action="sign_in", actor=admin_user).exists()


def test_audit_log_is_read_only_and_for_administrators_only(client, admin_user, django_user_model):
    AuditEvent.objects.create(action="upload", actor_name="alice")
    client.force_login(admin_user)
    assert client.get("/admin/kb/auditevent/").status_code == 200
    assert client.get("/admin/kb/auditevent/add/").status_code == 403
    staff = django_user_model.objects.create_user(username="curator", password="x-pass-word-9", is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/kb/auditevent/").status_code == 403
