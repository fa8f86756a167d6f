"""./run manage evaluate_factcheck --file FILE [--threshold P] [--json OUT]"""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from inference.factcheck.entailment import read_manifest
from inference.factcheck.pairs import factcheck_pairs
from kb.answering.factcheck import entailment_model
from kb.services.answer_evaluation import factcheck_scores


class Command(BaseCommand):
    help = (
        "Run only the fact-checker's entailment model on a factcheck.jsonl file (format: "
        "shared/eval/README.md) and print accuracy, F1 and ROC AUC as JSON."
    )

    def add_arguments(self, parser):
        parser.add_argument("--file", type=Path, required=True, help="factcheck.jsonl")
        parser.add_argument(
            "--threshold",
            type=float,
            help="P(supported) threshold (default: the model's own, from its manifest)",
        )
        parser.add_argument("--json", type=Path, dest="json_out", help="also write the JSON here")

    def handle(self, *args, file, threshold, json_out, **options):
        hypothesis_format = read_manifest()["hypothesis_format"]
        try:
            pairs = factcheck_pairs(file, hypothesis_format=hypothesis_format)
        except (OSError, ValueError, KeyError) as error:
            raise CommandError(f"{file}: not a fact-check file ({error!r})") from None
        if not pairs or all(pair.supported for pair in pairs) or not any(pair.supported for pair in pairs):
            raise CommandError(f"{file} needs both supported and unsupported claims")
        model = entailment_model()
        probabilities = [
            model.support_probabilities([(pair.premise, pair.hypothesis)])[0]
            for pair in tqdm(pairs, desc="checking", unit="claim", file=sys.stderr, disable=None)
        ]
        threshold = model.threshold if threshold is None else threshold
        report = {"file": str(file), "hypothesis_format": hypothesis_format} | factcheck_scores(
            probabilities, [pair.supported for pair in pairs], threshold=threshold
        )
        text = json.dumps(report, indent=2)
        if json_out:
            json_out.write_text(text + "\n", encoding="utf-8")
        self.stdout.write(text)
