"""./run manage import_terms FILE: bulk import sensitive terms from a CSV file (term,category,action)."""

import getpass
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from kb.services.sensitive_terms import TermImportError, import_terms_csv


class Command(BaseCommand):
    help = (
        "Import sensitive terms from a UTF-8 CSV file with the header term,category,action. Every line is "
        "checked first; if any is wrong nothing is imported. Running processes use the terms within seconds."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="CSV file")

    def handle(self, *args, file: Path, **options):
        if not file.is_file():
            raise CommandError(f"{file} is not a file")
        with file.open("rb") as content:
            try:
                result = import_terms_csv(content, actor_name=f"{getpass.getuser()} (import_terms command)")
            except TermImportError as error:
                raise CommandError(f"{file}: nothing imported: {error}") from None
        self.stdout.write(
            f"{file.name}: {result.created} created, {result.updated} updated, {result.unchanged} unchanged."
        )
