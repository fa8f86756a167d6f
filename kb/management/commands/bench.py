"""./run manage bench ingest [--docs DIR]: throughput numbers as JSON."""

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from kb.services.benchmarks import bench_ingest

DEFAULT_DOCS = settings.BASE_DIR.parent / "shared" / "eval" / "dev" / "docs"


class Command(BaseCommand):
    help = "Measure throughput and print JSON. 'ingest': pipeline chunks/s against raw model.encode."

    def add_arguments(self, parser):
        parser.add_argument("what", choices=["ingest"])
        parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS)

    def handle(self, *args, what, docs, **options):
        if not docs.is_dir():
            raise CommandError(f"{docs} is not a folder")
        self.stdout.write(json.dumps(bench_ingest(docs=docs), indent=2))
