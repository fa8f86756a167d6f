"""./run manage activate_model NAME [--build-version VERSION] [--precision int8|fp32]"""

import getpass

from django.core.management.base import BaseCommand, CommandError

from inference.catalog import GENERATORS, PRECISIONS
from kb.services.model_swaps import SwapFailed, activate_everywhere


class Command(BaseCommand):
    help = (
        "Swap another build of a generator into every engine of ENGINE_URLS, one after another, "
        "while they serve: requests already running finish on the old build, later ones get the new."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", choices=sorted(GENERATORS), metavar="NAME")
        # Not --version: every Django command has that one (its own version).
        parser.add_argument(
            "--build-version", help="a build version, e.g. 0.1.2-r1 (default: the catalog's current one)"
        )
        parser.add_argument("--precision", choices=PRECISIONS, default="int8")

    def handle(self, *args, name, build_version, precision, **options):
        def report(swap):
            replaced = " ".join(swap.replaced.values()) if swap.replaced else "nothing"
            self.stdout.write(f"{swap.engine}: serving {' '.join(swap.activated.values())} (was {replaced})")

        try:
            activate_everywhere(
                name,
                version=build_version,
                precision=precision,
                actor_name=f"{getpass.getuser()} (activate_model command)",
                on_swap=report,
            )
        except SwapFailed as error:
            raise CommandError(str(error)) from error
