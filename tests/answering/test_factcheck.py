"""The fact-check pass with the shipped entailment model and spaCy: one verdict per answer sentence."""

import pytest

from kb.answering.citations import DraftSentence
from kb.answering.consistency import unsupported_details
from kb.answering.factcheck import PREMISE_CHARS, PREMISE_SENTENCES, _premises, check_sentences
from kb.answering.sources import Source
from kb.models import AnswerSentence, Chunk, Document, DocumentVersion
from retrieval.tokenizer import search_tokens

Verdict = AnswerSentence.Verdict

LEAVE = "Employees may carry over five days of annual leave into the next year. Requests go to HR."
BONUS = "Annual bonuses are paid in March 2026 to every employee who joined before 1 October."


def evenly(question: str) -> dict[str, float]:
    """The question's terms, all weighted alike (sources.question_terms weights them by rarity)."""
    return dict.fromkeys(search_tokens(question), 1.0)


def source(number: int, text: str) -> Source:
    version = DocumentVersion(document=Document(title="Staff handbook"))
    return Source(
        number, Chunk(version=version, text=text, char_start=0, char_end=len(text)), 0, len(text), text
    )


@pytest.fixture(scope="module")
def sources():
    return [source(1, LEAVE), source(2, BONUS)]


def test_a_sentence_a_source_states_is_supported_and_cites_that_source(sources):
    [checked] = check_sentences(
        [DraftSentence("Annual bonuses are paid in March 2026.", marked=[1])],
        sources,
        question="When are bonuses paid?",
        terms=evenly("When are bonuses paid?"),
    )
    assert checked.verdict == Verdict.SUPPORTED
    assert checked.citations == [2]  # the generator's wrong marker [1] is not kept


def test_a_wrong_figure_makes_a_sentence_unsupported_with_the_reason(sources):
    [checked] = check_sentences(
        [DraftSentence("Bonuses are paid in March 2031.", marked=[2])],
        sources,
        question="When are bonuses paid?",
        terms=evenly("When are bonuses paid?"),
    )
    assert checked.verdict == Verdict.UNSUPPORTED
    assert checked.citations == []


def test_a_sentence_no_source_is_about_has_no_citation(sources):
    [checked] = check_sentences(
        [DraftSentence("The cafeteria serves vegetarian lasagne on Fridays.")],
        sources,
        question="Lunch?",
        terms=evenly("Lunch?"),
    )
    assert checked.verdict == Verdict.NO_CITATION and checked.citations == []


@pytest.mark.parametrize("text", ["When are annual bonuses paid?", 'Are bonuses paid "in March?"', ".the"])
def test_a_question_or_a_fragment_states_nothing_a_source_could_back(sources, text):
    """Both are words of the bonus passage, which the entailment model could take for support."""
    [checked] = check_sentences(
        [DraftSentence(text)],
        sources,
        question="When are bonuses paid?",
        terms=evenly("When are bonuses paid?"),
    )
    assert checked.verdict == Verdict.NO_CITATION and checked.citations == []


def test_without_sources_nothing_is_supported():
    [checked] = check_sentences(
        [DraftSentence("Five days carry over.")], [], question="Leave?", terms=evenly("Leave?")
    )
    assert checked.verdict == Verdict.NO_CITATION


def test_numbers_and_names_must_appear_in_the_evidence():
    assert unsupported_details("Five days carry over since 2019.", LEAVE) == [
        "number 2019 is in no cited source"
    ]
    assert unsupported_details("Bonuses of 1,000 EUR are paid.", "a bonus of 1000 EUR") == []
    assert unsupported_details("Maria Schmidt approves the requests.", LEAVE) == [
        "'Maria Schmidt' is in no cited source"
    ]
    assert unsupported_details("员工可以结转5天年假。", "员工可以结转5天年假") == []


def test_a_source_about_something_else_than_the_question_backs_nothing(sources):
    [checked] = check_sentences(
        [DraftSentence("Annual bonuses are paid in March 2026.", marked=[2])],
        sources,
        question="Who approves expense reports?",
        terms=evenly("Who approves expense reports?"),
    )
    assert checked.verdict == Verdict.UNSUPPORTED and checked.citations == []


def test_of_two_backing_sources_the_one_about_the_question_is_cited():
    """Source 1 backs the sentence a little more (P 0.91 against 0.81) but holds 2 of the question's
    5 search terms, source 2 holds 4: the citation goes to source 2."""
    [checked] = check_sentences(
        [DraftSentence("Bonuses are paid in March 2026.")],
        [
            source(1, "Bonuses are paid in March 2026."),
            source(2, "New employees: annual bonuses, like other payments, are made in March 2026."),
        ],
        question="When are annual bonuses paid to new employees?",
        terms=evenly("When are annual bonuses paid to new employees?"),
    )
    assert checked.verdict == Verdict.SUPPORTED
    assert checked.citations == [2]
    assert checked.support == pytest.approx(0.91, abs=0.02)  # the best support of any source


def test_a_long_excerpt_is_read_as_runs_of_sentences_the_model_can_take_whole():
    sentences = [
        f"Rule {number} of the travel policy applies to every trip booked by staff." for number in range(20)
    ]
    text = " ".join(sentences)
    spans, start = [], 0
    for sentence in sentences:
        start = text.index(sentence, start)
        spans.append((start, start + len(sentence)))
    long = Source(1, Chunk(text=text), 0, len(text), text, tuple(spans))
    premises = _premises(long)
    runs = [premise for premise in premises if premise.count("Rule") > PREMISE_SENTENCES]
    assert runs and all(len(premise) <= PREMISE_CHARS for premise in premises)
    assert runs[0].startswith(sentences[0]) and len(runs[0]) + len(sentences[0]) + 1 > PREMISE_CHARS
    assert all(any(sentence in run for run in runs) for sentence in sentences)
    assert len(premises) == len(set(premises))
