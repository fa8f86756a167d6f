"""./run manage search "query" [--collection NAME]… [--mode MODE] [--user NAME] [-k N] [--json]"""

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from kb.services.search import search_chunks
from retrieval.search import MODES, InvalidQuery

SNIPPET = 160


class Command(BaseCommand):
    help = "Search the indexed chunks as a user would (all collections the user may read by default)."

    def add_arguments(self, parser):
        parser.add_argument("query")
        parser.add_argument("--collection", action="append", dest="collections", metavar="NAME")
        parser.add_argument("--mode", choices=MODES, default="hybrid")
        parser.add_argument("--user", help="search with this user's rights (default: a superuser's)")
        parser.add_argument("-k", type=int, default=10, help="number of results")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print JSON, not a table")

    def handle(self, *args, query, collections, mode, user, k, as_json, **options):
        searcher = self._user(user)
        try:
            results = search_chunks(searcher, query, collections=collections, mode=mode, k=k)
        except InvalidQuery as error:
            raise CommandError(str(error)) from None
        rows = [
            {
                "rank": rank,
                "score": round(result.score, 6),
                "chunk": result.chunk.pk,
                "collection": result.chunk.version.document.collection.name,
                "document": result.chunk.version.document.title,
                "page": result.chunk.page,
                "text": result.chunk.text,
            }
            for rank, result in enumerate(results, start=1)
        ]
        if as_json:
            self.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        if not rows:
            self.stdout.write("no results")
        for row in rows:
            page = f", page {row['page']}" if row["page"] else ""
            self.stdout.write(
                f"{row['rank']:>2}. {row['score']:.4f}  {row['document']}{page} [{row['collection']}]"
            )
            self.stdout.write("    " + " ".join(row["text"].split())[:SNIPPET])

    def _user(self, name: str | None):
        if name is None:
            return get_user_model()(username="search command", is_active=True, is_superuser=True)
        try:
            return get_user_model().objects.get(username=name)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user named {name!r}") from None
