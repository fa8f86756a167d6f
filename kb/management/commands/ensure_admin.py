"""Create the first administrator account, once."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from kb.services import audit


class Command(BaseCommand):
    help = (
        "Create the administrator account 'admin' when no superuser exists yet. The password is "
        "KB_ADMIN_PASSWORD, or a generated one printed once. Does nothing on later runs."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = os.environ.get("KB_ADMIN_USER", "admin")
        password = os.environ.get("KB_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=username, email="", password=password)
        audit.record(action="create_admin", actor_name="system", target=user)
        if os.environ.get("KB_ADMIN_PASSWORD"):
            self.stdout.write(f"Created administrator '{username}' with the password from KB_ADMIN_PASSWORD.")
        else:
            self.stdout.write(
                f"Created administrator '{username}' with password: {password}\n"
                "This is shown only once; change it in the admin console."
            )
