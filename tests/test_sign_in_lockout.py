"""Failed sign-in lockout on the staff and console sign-in pages, and the staff page's ask limit
(real Redis counts, real audit rows)."""

import time

import pytest
from django.contrib.auth.models import User

from kb.models import AuditEvent

pytestmark = pytest.mark.django_db

STAFF, CONSOLE = "/accounts/login/", "/admin/login/"


@pytest.fixture
def alice():
    return User.objects.create_user("alice", password="pw-alice-123", is_staff=True)


def sign_in(client, username: str, password: str, page: str = STAFF):
    return client.post(page, {"username": username, "password": password})


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_five_wrong_passwords_lock_the_name_out_even_with_the_right_one(client, alice, settings):
    # Long enough for five sign-ins (password hashing included) on a loaded machine.
    settings.KB_SIGNIN_MAX_FAILURES, settings.KB_SIGNIN_LOCKOUT_SECONDS = 5, 5
    for _ in range(4):
        assert "Please enter a correct username and password" in sign_in(client, "alice", "wrong").text
    locked = sign_in(client, "Alice", "wrong")  # user names are counted whatever their case
    assert "Too many failed sign-ins. Try again in 1 minute." in locked.text
    response = sign_in(client, "alice", "pw-alice-123")
    assert not signed_in(client) and "Too many failed sign-ins" in response.text
    assert "Too many failed sign-ins" in sign_in(client, "alice", "pw-alice-123", page=CONSOLE).text
    lock = AuditEvent.objects.get(action="sign_in_locked")
    assert lock.actor_name == "Alice" and lock.detail == {"seconds": 5, "failures": 5}
    # Each refused attempt is still audited as a failure (4 + 1 wrong, 2 while locked out).
    assert AuditEvent.objects.filter(action="sign_in_failed").count() == 7
    time.sleep(5.1)
    sign_in(client, "alice", "pw-alice-123")
    assert signed_in(client)


def test_other_names_are_not_locked_and_unknown_names_lock_the_same_way(client, alice, settings):
    settings.KB_SIGNIN_MAX_FAILURES = 3
    for _ in range(3):
        sign_in(client, "nobody", "wrong")
    assert "Too many failed sign-ins" in sign_in(client, "nobody", "wrong").text
    sign_in(client, "alice", "pw-alice-123")
    assert signed_in(client)


def test_a_successful_sign_in_clears_the_failures(client, alice, settings):
    settings.KB_SIGNIN_MAX_FAILURES = 3
    for _ in range(2):
        sign_in(client, "alice", "wrong")
    sign_in(client, "alice", "pw-alice-123")
    assert signed_in(client)
    client.logout()
    for _ in range(2):
        sign_in(client, "alice", "wrong")
    sign_in(client, "alice", "pw-alice-123")
    assert signed_in(client)
    assert not AuditEvent.objects.filter(action="sign_in_locked").exists()


def test_the_staff_page_refuses_questions_over_the_limit_with_a_message(client, alice, settings):
    settings.KB_RATE_LIMITS, settings.ENGINE_URLS = "ask=1/h", []
    client.force_login(alice)
    assert client.post("/ask", {"question": "What is it?"}).status_code in (200, 400)
    refused = client.post("/ask", {"question": "What is it?"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert refused.json()["error"].startswith("Too many questions in a short time. Try again in")
