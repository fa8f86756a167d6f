"""./run manage reembed [--model NAME] [--status]"""

import getpass

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from kb.services.reembedding import reembed
from retrieval import reembedding
from retrieval.embedding import MODELS


class Command(BaseCommand):
    help = (
        "Re-embed every passage with KB_EMBEDDING_MODEL (or --model) while the knowledge base serves: "
        "searches use the old vectors until every new one is stored, then both change in one "
        "transaction. Stopped, it resumes where it stopped when run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", choices=sorted(MODELS), help="default: KB_EMBEDDING_MODEL")
        parser.add_argument("--status", action="store_true", help="only say where the index stands")

    def handle(self, *args, model, status, **options):
        if status:
            current = reembedding.state()
            done, total = reembedding.progress()
            target = f"; re-embedding with {current.next_model}: {done}/{total}" if current.next_model else ""
            self.stdout.write(f"index embedded with {current.model} ({total} passages){target}")
            return
        with tqdm(desc="re-embedding", unit="passage", disable=None) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                result = reembed(
                    model=model, actor_name=f"{getpass.getuser()} (reembed command)", on_progress=progress
                )
            except reembedding.ReembeddingError as error:
                raise CommandError(str(error)) from error
        if result["reembedded"] == 0 and result["model"] == result["previous_model"]:
            self.stdout.write(f"the index is already embedded with {result['model']}")
        else:
            self.stdout.write(
                f"index re-embedded with {result['model']} (was {result['previous_model']}): "
                f"{result['reembedded']} passages"
            )
