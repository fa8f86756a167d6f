"""The search tokenizer shared by BM25 indexing and querying."""

import pytest

from retrieval.tokenizer import query_language, search_tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("The Employees MAY carry over five days.", ["employees", "carry", "days"]),
        (
            "Audit under ISO-9001, clause A4.2.1",
            ["audit", "iso-9001", "iso", "9001", "clause", "a4.2.1", "a4", "2", "1"],
        ),
        (
            "Fees of $1,000.50 are due on 2026-03-01.",
            ["fees", "1000.50", "1000", "50", "2026-03-01", "2026", "03", "01"],
        ),
        ("ＩＳＯ９００１ long-term", ["iso9001", "long-term", "long", "term"]),
        ("", []),
    ],
)
def test_english_words_numbers_and_codes(text, tokens):
    assert search_tokens(text) == tokens


def test_a_code_is_found_by_its_parts_and_whole():
    document = set(search_tokens("Certified under ISO-9001 since 2019."))
    assert {"iso", "9001"} <= document
    assert "iso-9001" in document


def test_chinese_is_segmented_into_words_without_function_words():
    tokens = search_tokens("几内亚法郎是几内亚的流通货币。")
    assert tokens.count("几内亚") == 2
    assert {"法郎", "流通", "货币"} <= set(tokens)
    assert "的" not in tokens and "。" not in tokens


def test_mixed_chinese_and_english():
    assert search_tokens("使用Kubernetes部署服务") == ["使用", "kubernetes", "部署", "服务"]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("How many days of leave?", "en"),
        ("员工年假有几天", "zh"),
        ("ISO-9001 认证的有效期是多久", "zh"),
        ("", "en"),
    ],
)
def test_query_language_follows_the_script_of_most_letters(text, language):
    assert query_language(text) == language
