"""The sensitive-term filter: matching, the CSV import, live updates in every process, audited blocks."""

import io
import json

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from kb.answering.sensitive_terms import MASK_CHARACTER, Action, Term, TermMatcher, term_key
from kb.models import AuditEvent, SensitiveTerm
from kb.services.sensitive_terms import (
    VERSION_KEY,
    TermImportError,
    current_matcher,
    import_terms_csv,
    screen_text,
    terms_version,
)


def matcher(*terms: tuple[str, str, str]) -> TermMatcher:
    return TermMatcher(Term(text, category, action) for text, category, action in terms)


def found(screening, text: str) -> list[str]:
    return [text[match.start : match.end] for match in screening.matches]


def csv_file(*lines: str, encoding: str = "utf-8") -> io.BytesIO:
    return io.BytesIO("\n".join(lines).encode(encoding))


# Matching


def test_terms_match_whatever_their_case_or_full_width_form():
    terms = matcher(("Project Falcon", "codename", "flag"))
    text = "Status of PROJECT falcon and of Ｐｒｏｊｅｃｔ　Ｆａｌｃｏｎ."
    assert found(terms.screen(text), text) == ["PROJECT falcon", "Ｐｒｏｊｅｃｔ　Ｆａｌｃｏｎ"]


def test_latin_terms_match_only_as_whole_words():
    terms = matcher(("ass", "profanity", "flag"), ("SKU-1", "product", "flag"))
    assert terms.screen("The class passed; SKU-12 and xSKU-1 ship.").matches == ()
    text = "(ass) SKU-1, sku-1."
    assert found(terms.screen(text), text) == ["ass", "SKU-1", "sku-1"]


def test_chinese_terms_match_inside_running_text():
    terms = matcher(("机密", "secret", "flag"), ("SKU-1", "product", "flag"))
    text = "这份机密文件请联系SKU-1部门"
    assert found(terms.screen(text), text) == ["机密", "SKU-1"]


def test_offsets_point_into_the_original_text_where_folding_changes_its_length():
    terms = matcher(
        ("strasse", "", "flag"), ("file", "", "flag"), ("café", "", "flag"), ("top secret", "", "flag")
    )
    text = "Die Straße, the ﬁle, a cafe\u0301, TOP\n\t  SE\u200bCRET!"
    assert found(terms.screen(text), text) == ["Straße", "ﬁle", "cafe\u0301", "TOP\n\t  SE\u200bCRET"]


def test_of_overlapping_matches_the_longest_wins():
    terms = matcher(
        ("机密", "secret", "mask"),
        ("机密文件", "secret", "block"),
        ("new york", "place", "flag"),
        ("york city council", "body", "flag"),
    )
    text = "这是机密文件，和机密。New York City Council met."
    assert found(terms.screen(text), text) == ["机密文件", "机密", "York City Council"]


def test_mask_terms_are_replaced_by_as_many_mask_characters_and_the_rest_left_alone():
    terms = matcher(("salary band", "hr", "mask"), ("merger", "deal", "flag"))
    screening = terms.screen("Her Salary Band is E3 (merger pending).")
    assert screening.text == f"Her {MASK_CHARACTER * 11} is E3 (merger pending)."
    assert not screening.blocked
    assert [(match.term, match.category, match.action) for match in screening.flagged] == [
        ("merger", "deal", Action.FLAG)
    ]


def test_a_single_block_term_blocks_the_text():
    terms = matcher(("falcon", "codename", "block"), ("budget", "finance", "flag"))
    screening = terms.screen("What is the Falcon budget?")
    assert screening.blocked
    assert [match.term for match in screening.blocking] == ["falcon"]
    assert not terms.screen("What is the budget?").blocked


@pytest.mark.parametrize("text", ["", "   ", "\t\n", "\u200b\u200d"])
def test_empty_or_blank_terms_are_rejected(text):
    with pytest.raises(ValueError):
        Term(text)


def test_unknown_actions_are_rejected():
    with pytest.raises(ValueError):
        Term("falcon", action="delete")


def test_terms_that_differ_only_in_case_are_one_term_with_the_stricter_action():
    terms = matcher(("Falcon", "a", "flag"), ("FALCON", "b", "block"), ("falcon", "c", "mask"))
    assert len(terms) == 1
    assert terms.screen("falcon").blocked


def test_text_with_lone_surrogates_is_still_screened():
    screening = matcher(("机密", "secret", "mask")).screen("机密\ud800 \udfff机密")
    assert screening.text == f"{MASK_CHARACTER * 2}\ud800 \udfff{MASK_CHARACTER * 2}"


def test_a_matcher_without_terms_lets_everything_through():
    screening = TermMatcher([]).screen("anything at all")
    assert (screening.text, screening.matches, screening.blocked) == ("anything at all", (), False)


PIECES = ["a", "b", "A", "Ｂ", " ", "  ", "\n", "\u200b", "e\u0301", "é", "机", "密", "-", "1", "x"]


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_every_match_is_a_span_of_the_original_that_folds_to_its_term(pieces):
    text = "".join(pieces)
    terms = matcher(
        ("ab", "", "mask"), ("a b", "", "flag"), ("机密", "", "mask"), ("b-1", "", "flag"), ("é", "", "mask")
    )
    screening = terms.screen(text)
    assert len(screening.text) == len(text)
    for match in screening.matches:
        assert term_key(text[match.start : match.end]) == term_key(match.term)
    assert [match.start for match in screening.matches] == sorted(match.start for match in screening.matches)


# Importing from CSV


def test_two_hundred_thousand_rows_import_in_one_go(db):
    actions = ["block", "mask", "flag"]
    rows = [f"term {index},category {index % 7},{actions[index % 3]}" for index in range(200_000)]
    result = import_terms_csv(csv_file("term,category,action", *rows))
    assert (result.created, result.updated, result.unchanged) == (200_000, 0, 0)
    assert SensitiveTerm.objects.count() == 200_000
    assert SensitiveTerm.objects.get(term="term 199999").action == "mask"


def test_importing_again_updates_changed_terms_and_counts_the_rest_unchanged(db):
    import_terms_csv(csv_file("term,category,action", "falcon,codename,flag", "merger,deal,flag"))
    result = import_terms_csv(
        csv_file("term,category,action", "falcon,codename,block", "merger,deal,flag", "eagle,,")
    )
    assert (result.created, result.updated, result.unchanged) == (1, 1, 1)
    stored = dict(SensitiveTerm.objects.values_list("term", "action"))
    assert stored == {"falcon": "block", "merger": "flag", "eagle": "flag"}


def test_utf8_files_with_a_byte_order_mark_and_chinese_terms_import(db):
    import_terms_csv(
        csv_file(
            "term,category,action", "机密文件,保密,block", '"Smith, John",person,mask', encoding="utf-8-sig"
        )
    )
    assert dict(SensitiveTerm.objects.values_list("term", "category")) == {
        "机密文件": "保密",
        "Smith, John": "person",
    }


@pytest.mark.parametrize(
    "lines, message",
    [
        (["eagle,bird,flag", ",bird,block"], "line 4: the term is empty"),
        (["eagle,bird,flag", "owl,bird,ban"], "line 4: unknown action 'ban'"),
        (["eagle,bird,flag", "owl,bird"], "line 4: expected 3 columns"),
        (["eagle,bird,flag", "x" * 201 + ",,flag"], "line 4: the term is longer than 200 characters"),
        (["eagle,bird,flag", "owl," + "c" * 101 + ",flag"], "line 4: the category is longer than 100"),
        (["Eagle,bird,flag", "", "EAGLE,bird,block"], "line 5: the term 'EAGLE' is already on line 3"),
        (["eagle,bird,flag", "\u200b,bird,flag"], "line 4: the term is empty"),
        (["eagle,bird,flag", "owl,bird\x00,flag"], "line 4: the line holds a NUL character"),
        (["eagle,bird,flag", '"owl,bird,flag', "hawk,bird,flag"], "line 4: this is not valid CSV"),
    ],
)
def test_a_malformed_file_names_the_line_and_imports_nothing(db, lines, message):
    SensitiveTerm.objects.create(term="falcon", action="block")
    with pytest.raises(TermImportError, match=message):
        import_terms_csv(csv_file("term,category,action", "falcon,codename,flag", *lines))
    assert list(SensitiveTerm.objects.values_list("term", "category", "action")) == [("falcon", "", "block")]


@pytest.mark.parametrize(
    "lines, message",
    [
        (["word,kind", "eagle,bird"], "line 1: the header must be term,category,action"),
        ([], "line 1: the file is empty"),
    ],
)
def test_a_file_without_the_header_row_imports_nothing(db, lines, message):
    with pytest.raises(TermImportError, match=message):
        import_terms_csv(csv_file(*lines))
    assert not SensitiveTerm.objects.exists()


def test_a_file_that_is_not_utf8_names_the_line_of_the_first_bad_byte(db):
    content = "term,category,action\nfalcon,,flag\nmünchen,place,flag\n".encode("latin-1")
    with pytest.raises(TermImportError, match="line 3: the file is not UTF-8"):
        import_terms_csv(io.BytesIO(content))
    assert not SensitiveTerm.objects.exists()


def test_every_wrong_line_is_reported_at_once(db):
    with pytest.raises(TermImportError) as error:
        import_terms_csv(csv_file("term,category,action", ",,flag", "ok,,flag", "bad,,nope"))
    assert [line for line, _ in error.value.problems] == [2, 4]


def test_an_import_is_one_audit_event_with_the_counts(db, admin_user):
    import_terms_csv(csv_file("term,category,action", "falcon,,block", "eagle,,flag"), actor=admin_user)
    event = AuditEvent.objects.get(action="sensitive_terms_import")
    assert event.actor == admin_user
    assert (event.detail["created"], event.detail["updated"], event.detail["unchanged"]) == (2, 0, 0)


def test_import_terms_command_prints_a_summary(db, tmp_path, capsys):
    path = tmp_path / "terms.csv"
    path.write_text("term,category,action\nfalcon,codename,block\n", encoding="utf-8")
    call_command("import_terms", str(path))
    assert "terms.csv: 1 created, 0 updated, 0 unchanged." in capsys.readouterr().out
    assert AuditEvent.objects.get(action="sensitive_terms_import").actor_name.endswith(
        "(import_terms command)"
    )


def test_import_terms_command_fails_on_a_malformed_file(db, tmp_path):
    path = tmp_path / "terms.csv"
    path.write_text("term,category,action\nfalcon,codename,destroy\n", encoding="utf-8")
    with pytest.raises(CommandError, match="nothing imported: line 2: unknown action 'destroy'"):
        call_command("import_terms", str(path))
    assert not SensitiveTerm.objects.exists()


# Live updates and the audit trail


@pytest.mark.django_db(transaction=True)
def test_a_term_added_elsewhere_is_screened_for_after_the_refresh_interval(settings):
    settings.KB_SENSITIVE_TERMS_REFRESH_SECONDS = 3600
    before = current_matcher()
    assert not before.screen("The Osprey launch date").blocked
    SensitiveTerm.objects.create(term="osprey", category="codename", action="block")  # commits at once
    assert current_matcher() is before  # within the interval the token is not even read
    settings.KB_SENSITIVE_TERMS_REFRESH_SECONDS = 0
    assert current_matcher().screen("The Osprey launch date").blocked
    SensitiveTerm.objects.filter(term="osprey").delete()
    assert not current_matcher().screen("The Osprey launch date").blocked


def test_an_import_is_screened_for_once_it_commits(db, settings, django_capture_on_commit_callbacks):
    settings.KB_SENSITIVE_TERMS_REFRESH_SECONDS = 0
    assert not current_matcher().screen("harrier").matches
    with django_capture_on_commit_callbacks(execute=True):
        import_terms_csv(csv_file("term,category,action", "harrier,codename,mask"))
    assert current_matcher().screen("harrier").text == MASK_CHARACTER * 7


def test_a_matcher_is_not_rebuilt_while_the_terms_are_unchanged(db, settings):
    settings.KB_SENSITIVE_TERMS_REFRESH_SECONDS = 0
    assert current_matcher() is current_matcher()


def test_the_terms_version_changes_when_a_term_changes(db, django_capture_on_commit_callbacks):
    before = terms_version()
    assert terms_version() == before
    with django_capture_on_commit_callbacks(execute=True):
        SensitiveTerm.objects.create(term="kestrel", action="flag")
    assert terms_version() != before


def test_a_blocked_question_is_audited_without_the_rest_of_the_question(db, settings, admin_user, rf):
    settings.KB_SENSITIVE_TERMS_REFRESH_SECONDS = 0
    SensitiveTerm.objects.create(term="Project Falcon", category="codename", action="block")
    SensitiveTerm.objects.create(term="budget", category="finance", action="flag")
    cache.delete(VERSION_KEY)  # stands in for the commit this test's transaction never makes
    question = "What is the project falcon budget for my team in Lyon?"
    screening = screen_text(question, actor=admin_user, request=rf.get("/"), where="question")
    assert screening.blocked
    event = AuditEvent.objects.get(action="safety_block")
    assert event.actor == admin_user
    assert event.detail == {
        "where": "question",
        "reason": "sensitive_terms",
        "terms": ["Project Falcon"],
        "categories": ["codename"],
    }
    assert "Lyon" not in json.dumps(event.detail)


def test_text_that_is_not_blocked_writes_no_audit_event(db, settings, admin_user):
    settings.KB_SENSITIVE_TERMS_REFRESH_SECONDS = 0
    SensitiveTerm.objects.create(term="salary", category="hr", action="mask")
    cache.delete(VERSION_KEY)
    screening = screen_text("Your salary is paid monthly.", actor=admin_user, where="answer")
    assert screening.text == f"Your {MASK_CHARACTER * 6} is paid monthly."
    assert not AuditEvent.objects.filter(action="safety_block").exists()
