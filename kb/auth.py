"""Signing in with the failed sign-in lockout (kb.services.sign_in) on every password form.

The backend refuses a locked-out user name even with the right password, wherever Django
authenticates (the staff sign-in page, the console's, any later one); the forms say why instead
of the usual "wrong password" message.
"""

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.translation import ngettext

from kb.services.sign_in import locked_for


class LockoutBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is not None and locked_for(username):
            # Django counts this as a failed sign-in (user_login_failed) and tries no other backend.
            raise PermissionDenied("locked out after too many failed sign-ins")
        return super().authenticate(request, username=username, password=password, **kwargs)


class LockoutMessage:
    def get_invalid_login_error(self):
        seconds = locked_for(self.cleaned_data.get("username") or "")
        if not seconds:
            return super().get_invalid_login_error()
        minutes = -(-seconds // 60)
        return ValidationError(
            ngettext(
                "Too many failed sign-ins. Try again in %(minutes)d minute.",
                "Too many failed sign-ins. Try again in %(minutes)d minutes.",
                minutes,
            ),
            code="locked_out",
            params={"minutes": minutes},
        )


class SignInForm(LockoutMessage, AuthenticationForm):
    pass


class ConsoleSignInForm(LockoutMessage, AdminAuthenticationForm):
    pass
