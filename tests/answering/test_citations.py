"""Reading the generator's markers: sentences, markers on the right sentence, invalid ones counted."""

from kb.answering.citations import read_answer, render


def test_markers_belong_to_the_sentence_they_follow_even_after_its_full_stop():
    draft = read_answer(
        "Leave carries over [1]. Bonuses are paid in March.[2][3] Nothing else.", valid_numbers={1, 2, 3}
    )
    assert [(sentence.text, sentence.marked) for sentence in draft.sentences] == [
        ("Leave carries over.", [1]),
        ("Bonuses are paid in March.", [2, 3]),
        ("Nothing else.", []),
    ]
    assert draft.invalid_markers == 0


def test_markers_naming_no_given_source_are_removed_and_counted():
    draft = read_answer("Five days carry over [1, 7]. See [9].", valid_numbers={1, 2})
    assert [sentence.marked for sentence in draft.sentences] == [[1], []]
    assert draft.invalid_markers == 2
    assert "[" not in " ".join(sentence.text for sentence in draft.sentences)


def test_chinese_answers_with_full_width_markers():
    draft = read_answer("员工可以结转五天年假【1】。奖金在三月发放[2]。", valid_numbers={1, 2})
    assert [(sentence.text, sentence.marked) for sentence in draft.sentences] == [
        ("员工可以结转五天年假。", [1]),
        ("奖金在三月发放。", [2]),
    ]


def test_rendered_answers_put_markers_after_each_sentence():
    assert render([("A.", [1]), ("B.", [1, 2])], language="en") == "A.[1] B.[1][2]"
    assert render([("甲。", [1]), ("乙。", [])], language="zh") == "甲。[1]乙。"


def test_attribution_phrases_become_markers_and_leave_the_sentence():
    draft = read_answer(
        "According to Source 2, the town was Manakin. Based on the sources above, it was granted in 1700.",
        valid_numbers={1, 2},
    )
    assert [(sentence.text, sentence.marked) for sentence in draft.sentences] == [
        ("The town was Manakin.", [2]),
        ("It was granted in 1700.", []),
    ]
    chinese = read_answer("根据资料1，员工可以结转五天年假。", valid_numbers={1, 2})
    assert [(sentence.text, sentence.marked) for sentence in chinese.sentences] == [
        ("员工可以结转五天年假。", [1])
    ]
