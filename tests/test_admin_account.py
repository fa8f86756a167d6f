"""The first administrator is created once, with a password shown once."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_first_start_creates_admin_with_a_generated_password_shown_once(monkeypatch):
    monkeypatch.delenv("KB_ADMIN_PASSWORD", raising=False)
    first, second = io.StringIO(), io.StringIO()
    call_command("ensure_admin", stdout=first)
    call_command("ensure_admin", stdout=second)
    password = first.getvalue().split("password: ")[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    assert second.getvalue() == ""
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def test_admin_password_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("KB_ADMIN_PASSWORD", "from-the-env-1234")
    output = io.StringIO()
    call_command("ensure_admin", stdout=output)
    assert get_user_model().objects.get(username="admin").check_password("from-the-env-1234")
    assert "from-the-env-1234" not in output.getvalue()
