"""Query transformations: abbreviations spelt out from the collection, compound questions split,
keywords, engine forms (the real SmolLM2), fused search, answering with them, and `evaluate
--transforms` over documents ingested by the real pipeline."""

import json

import pytest
from django.core.management import CommandError, call_command

from kb.models import Collection
from kb.services.query_transforms import (
    TRANSFORMS,
    by_initials,
    decomposed,
    expanded_abbreviations,
    keywords,
    query_forms,
    schwartz_hearst,
    transformed_search,
)
from kb.services.search import chunks_for
from retrieval.search import search
from tests.test_search_access import ingest
from tests.test_settings import run_python

pytestmark = pytest.mark.django_db

SAFETY = (
    b"# Site safety\n\nEvery visitor must wear personal protective equipment (PPE) on the floor. "
    b"Forklift drivers need a valid licence.\n"
)
STORES = b"# Stores\n\nPPE is issued by the stores desk on the ground floor, next to the canteen.\n"
CANTEEN = b"# Canteen\n\nThe canteen opens at noon and closes at three.\n"


@pytest.fixture
def site():
    collection = Collection.objects.create(name="Site")
    for name, data in (("safety.md", SAFETY), ("stores.md", STORES), ("canteen.md", CANTEEN)):
        ingest(collection, name, data)
    return collection


@pytest.mark.parametrize(
    "short, words, expected",
    [
        ("PPE", "visitors must wear personal protective equipment".split(), "personal protective equipment"),
        (
            "HFRS",
            "severe hemorrhagic fever with renal syndrome".split(),
            "hemorrhagic fever with renal syndrome",
        ),
        (
            "NTCP",
            "the Na taurocholate cotransporting polypeptide".split(),
            "Na taurocholate cotransporting polypeptide",
        ),
        ("PPE", "must wear protective gear".split(), None),
    ],
)
def test_an_abbreviation_is_spelt_out_by_the_initials_of_the_words_before_it(short, words, expected):
    assert by_initials(short, words) == expected


def test_schwartz_and_hearst_find_a_long_form_whose_letters_are_not_all_initials():
    assert (
        schwartz_hearst("BSkyB", "the satellite broadcaster British Sky Broadcasting")
        == "British Sky Broadcasting"
    )
    assert schwartz_hearst("XYZ", "nothing here matches") is None


def test_abbreviations_get_the_long_form_the_collection_spells_out(site):
    assert expanded_abbreviations("Where is PPE issued?", [site.pk]) == [
        "Where is PPE issued? personal protective equipment"
    ]
    assert expanded_abbreviations("When does the canteen open?", [site.pk]) == []
    assert expanded_abbreviations("Where is the ABC desk?", [site.pk]) == []  # never spelt out


def test_compound_questions_are_split_and_keywords_drop_question_words():
    assert decomposed("What must visitors wear and when does the canteen open?") == [
        "What must visitors wear",
        "when does the canteen open?",
    ]
    assert decomposed("Who issues boots and gloves?") == []  # one question about two things
    assert decomposed("食堂几点开门；谁发放防护用品？") == ["食堂几点开门", "谁发放防护用品？"]
    assert keywords("When does the canteen open?") == ["canteen open"]
    assert keywords("食堂几点开门？") == []


def test_a_transformed_search_fuses_the_forms_with_the_question(site):
    question = "When does the canteen open and where is PPE issued?"
    fused = transformed_search(question, scopes=[site.pk], k=2, transforms=["decomposition", "abbreviations"])
    titles = [result.chunk.version.document.title for result in chunks_for(fused, [site.pk])]
    assert sorted(titles) == ["Canteen", "Stores"]  # each part's passage, safety's "PPE" below them
    assert all(hit.bm25_rank is not None for hit in fused)
    # No form: exactly the plain search.
    alone = "When does the canteen open?"
    assert transformed_search(alone, scopes=[site.pk], k=3, transforms=["decomposition"]) == search(
        alone, scopes=[site.pk], k=3
    )
    with pytest.raises(ValueError, match="unknown query transformation"):
        query_forms("Where?", "telepathy", scopes=[site.pk])


def test_engine_forms_come_from_the_engine_or_not_at_all(engine, settings, site):
    for transform in ("paraphrase", "hypothetical"):
        forms = query_forms("When does the canteen open?", transform, scopes=[site.pk])
        assert len(forms) <= 1 and all(form.strip() and "\n" not in form for form in forms)
    settings.ENGINE_URLS = ["http://127.0.0.1:9"]  # nothing listens
    assert query_forms("When does the canteen open?", "paraphrase", scopes=[site.pk]) == []


def test_evaluate_scores_each_transformation_against_the_plain_search(site, tmp_path, celery_worker):
    celery_worker.stop()  # the command ingests in this process, inside the test's transaction
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, data in (
        ("en_site_safety.md", SAFETY),
        ("en_site_stores.md", STORES),
        ("en_site_canteen.md", CANTEEN),
    ):
        (docs / name).write_bytes(data)
    questions = tmp_path / "questions.jsonl"
    rows = [
        {
            "id": "1",
            "question": "What must visitors wear on the floor?",
            "answers": ["PPE"],
            "doc": "en_site_safety.md",
            "evidence": None,
            "lang": "en",
        },
        {
            "id": "2",
            "question": "Where is PPE issued?",
            "answers": ["the stores desk"],
            "doc": "en_site_stores.md",
            "evidence": None,
            "lang": "en",
        },
    ]
    questions.write_text("\n".join(json.dumps(row) for row in rows))
    out = tmp_path / "report.json"
    call_command(
        "evaluate",
        "--docs",
        str(docs),
        "--questions",
        str(questions),
        "--transforms",
        "abbreviations,keywords",
        "--json",
        str(out),
    )
    report = json.loads(out.read_text())["transforms"]
    assert list(report) == ["abbreviations", "keywords"]
    assert report["abbreviations"]["given_a_form"] == 1 and report["keywords"]["given_a_form"] == 2
    for scores in report.values():
        assert scores["questions"] == 2 and set(scores["with"]) == set(scores["without"]) == {"all", "en"}
        assert scores["with"]["all"]["recall@5"] == 1.0
    with pytest.raises(CommandError, match="unknown transformation 'telepathy'"):
        call_command(
            "evaluate", "--docs", str(docs), "--questions", str(questions), "--transforms", "telepathy"
        )


def test_an_unknown_transformation_in_the_settings_stops_the_start(tmp_path):
    result = run_python(
        "import django; django.setup()", KB_VAR_DIR=str(tmp_path), KB_QUERY_TRANSFORMS="keywords,x"
    )
    assert result.returncode != 0 and "unknown transformation 'x'" in result.stderr
    assert set(TRANSFORMS) == {"abbreviations", "decomposition", "keywords", "paraphrase", "hypothetical"}
