"""./run manage ingest PATH… --collection NAME [--wait]"""

import getpass
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from kb.models import Collection, DocumentVersion
from kb.services import audit
from kb.services.ingestion import UploadRejected, finish_jobs, upload_document


class Command(BaseCommand):
    help = (
        "Upload files (folders are searched recursively) into a collection, created if missing. "
        "With --wait, follow the ingestion jobs until each is done or failed; without a running "
        "worker they are processed in this process."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--collection", required=True)
        parser.add_argument("--wait", action="store_true", help="wait until every job has ended")

    def handle(self, *args, paths, collection, wait, **options):
        actor_name = f"{getpass.getuser()} (ingest command)"
        target, created = Collection.objects.get_or_create(name=collection)
        if created:
            audit.record(action="create", actor_name=actor_name, target=target)
        files = list(_files(paths))
        if not files:
            raise CommandError("no files found in the given paths")
        versions, rejected = [], []
        for path, name in tqdm(files, desc="uploading", unit="file", disable=None):
            try:
                with path.open("rb") as content:
                    result = upload_document(
                        collection=target, name=name, content=content, actor_name=actor_name
                    )
                versions.append(result.version)
            except (UploadRejected, OSError) as error:
                rejected.append((name, str(error)))
        if wait:
            self._follow([version.pk for version in versions])
        self._summarise(versions, rejected)

    def _follow(self, pks: list[int]) -> None:
        with tqdm(total=len(pks), desc="ingesting", unit="doc", disable=None) as bar:

            def show(ended: int) -> None:
                bar.n = ended
                bar.refresh()

            if not finish_jobs(pks, on_progress=show):
                self.stdout.write("no worker answered; the documents were processed here")

    def _summarise(self, versions: list[DocumentVersion], rejected: list[tuple[str, str]]) -> None:
        for version in DocumentVersion.objects.filter(pk__in=[v.pk for v in versions]).order_by("pk"):
            detail = f"{version.chunks_total} chunks" if not version.error else version.error
            self.stdout.write(f"{version.job_state:<9} {version.original_name}: {detail}")
        for name, reason in rejected:
            self.stdout.write(f"{'rejected':<9} {name}: {reason}")


def _files(paths: list[Path]):
    """(path, name) for each file; a file found in a folder is named by its path inside it."""
    for path in paths:
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                relative = file.relative_to(path)
                if file.is_file() and not any(part.startswith(".") for part in relative.parts):
                    yield file, str(relative)
        elif path.is_file():
            yield path, path.name
        else:
            raise CommandError(f"{path} does not exist")
