"""./run manage ask "question" --user NAME [--collection NAME]… [--json]"""

import json
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from kb.services.answers import ask
from retrieval.search import InvalidQuery


class Command(BaseCommand):
    help = (
        "Ask a question as a user (from the collections they may read) and print the checked answer "
        "with its citations and per-sentence verdicts. The generated text streams to stderr."
    )

    def add_arguments(self, parser):
        parser.add_argument("question")
        parser.add_argument("--user", required=True, help="ask with this user's rights")
        parser.add_argument("--collection", action="append", dest="collections", metavar="NAME")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print JSON")

    def handle(self, *args, question, user, collections, as_json, **options):
        try:
            asker = get_user_model().objects.get(username=user, is_active=True)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no active user named {user!r}") from None

        def stream(text: str) -> None:
            sys.stderr.write(text)
            sys.stderr.flush()

        try:
            asked = ask(user=asker, question=question, collections=collections, on_token=stream)
        except InvalidQuery as error:
            raise CommandError(str(error)) from None
        sys.stderr.write("\n")
        report = answer_report(asked)
        if as_json:
            self.stdout.write(json.dumps(report, ensure_ascii=False, indent=2))
            return
        self.stdout.write(f"{report['outcome']}: {report['answer']}")
        for sentence in report["sentences"]:
            shown = "" if sentence["shown"] else " (dropped)"
            self.stdout.write(f"  - {sentence['verdict']}{shown}: {sentence['text']}")
        for citation in report["citations"]:
            page = f", page {citation['page']}" if citation["page"] else ""
            self.stdout.write(f"  [{citation['number']}] {citation['title']}{page}: {citation['passage']}")


def answer_report(asked) -> dict:
    answer = asked.answer
    return {
        "question": asked.text,
        "outcome": answer.outcome,
        "answer": answer.text,
        "cache_hit": asked.cache_hit,
        "latency_ms": asked.latency_ms,
        "first_token_ms": answer.first_token_ms,
        "sentences": [
            {
                "text": sentence.text,
                "verdict": sentence.verdict,
                "support": sentence.support,
                "problems": sentence.problems,
                "shown": sentence.shown,
                "citations": [citation.number for citation in sentence.citations.all()],
            }
            for sentence in answer.sentences.all()
        ],
        "citations": [
            {
                "number": citation.number,
                "title": citation.title,
                "page": citation.page,
                "chunk": citation.chunk_id,
                "char_start": citation.char_start,
                "char_end": citation.char_end,
                "passage": citation.version.parsed_text[citation.char_start : citation.char_end]
                if citation.version
                else "",
            }
            for citation in answer.citations.select_related("version")
        ],
        "detail": answer.detail,
    }
