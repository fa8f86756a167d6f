"""Audit receivers for events Django raises itself: sign-ins and failed sign-ins."""

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from kb.services import audit


@receiver(user_logged_in)
def audit_sign_in(sender, request, user, **kwargs):
    audit.record(action="sign_in", actor=user, target=user, request=request)


@receiver(user_login_failed)
def audit_failed_sign_in(sender, credentials, request=None, **kwargs):
    # Only the user name is kept; the password Django passes along is never stored.
    audit.record(
        action="sign_in_failed",
        actor_name=str(credentials.get("username", ""))[:150],
        request=request,
    )
