"""./run manage create_token USER [--name NAME] [--read-only] [--collection NAME ...]"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from kb.selectors import readable_collections
from kb.services.tokens import create_token


class Command(BaseCommand):
    help = "Create a REST API token for a user and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("user", help="user name the token acts as")
        parser.add_argument("--name", default="command line", help="what the token is for")
        parser.add_argument("--read-only", action="store_true", help="search and ask only")
        parser.add_argument(
            "--collection",
            action="append",
            default=[],
            help="limit the token to this collection (repeatable)",
        )

    def handle(self, *args, user, name, read_only, collection, **options):
        owner = get_user_model().objects.filter(username=user, is_active=True).first()
        if owner is None:
            raise CommandError(f"no active user named {user!r}")
        readable = {c.name: c for c in readable_collections(owner)}
        unknown = [wanted for wanted in collection if wanted not in readable]
        if unknown:
            raise CommandError(f"{user} may not read a collection named {unknown[0]!r}")
        new = create_token(
            user=owner,
            name=name,
            read_only=read_only,
            collections=[readable[wanted] for wanted in collection],
        )
        self.stdout.write(new.key)
        self.stderr.write(
            f"Token {new.token.prefix}… for {user}: send it as 'Authorization: Bearer <token>'."
        )
