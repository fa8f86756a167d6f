"""`bench generation` on the SmolLM2 builds: every number it reports comes from a real run."""

import json

import pytest

from inference.catalog import SMOLLM2_135M
from inference.llama_cpp_bench import NOT_INSTALLED, llama_cpp_available
from inference.model_store import read_manifest
from kb.services.generation_benchmark import GenerationBenchmarkError, bench_generation

DOCUMENT = "# Leave\n\n" + "Employees may carry over five days of annual leave into the next year. " * 20


@pytest.fixture
def dev_set(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text(DOCUMENT)
    questions = tmp_path / "questions.jsonl"
    rows = [
        {"id": "q0", "question": "年假可以结转几天？", "doc": "leave.md", "lang": "zh"},
        {"id": "q1", "question": "How many days carry over?", "doc": "leave.md", "lang": "en", "answers": []},
        {
            "id": "q2",
            "question": "How many days of annual leave can employees carry over?",
            "answers": ["five days", "5"],
            "doc": "leave.md",
            "evidence": "carry over five days",
            "lang": "en",
        },
    ]
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return docs, questions


def test_generation_benchmark_measures_both_precisions_batches_and_the_answer_prompt(
    smollm2_builds, dev_set, settings
):
    settings.KB_ANSWER_SOURCES, settings.KB_ANSWER_SOURCE_CHARS = 2, [300]
    docs, questions = dev_set
    steps = []
    report = bench_generation(
        docs=docs,
        questions=questions,
        model=SMOLLM2_135M.name,
        prompt_tokens=(48,),
        new_tokens=6,
        concurrency=(1, 3),
        quality_questions=1,
        on_step=steps.append,
    )
    # llama.cpp is measured only where llama-cpp-python was installed for the benchmark.
    compared = llama_cpp_available()
    assert len(steps) == len(report["size_bytes"]) + 4 + compared
    if compared:
        assert report["llama_cpp"]["quantization"] == "Q8_0"
        assert report["llama_cpp"]["48"]["decode_tokens_per_s"] > 0
        assert set(report["int8_decode_over_llama_cpp_q8"]) == {"48"}
    else:
        assert report["llama_cpp"] == {"skipped": NOT_INSTALLED}
        assert "int8_decode_over_llama_cpp_q8_at_least" not in report["targets"]
    for precision, size in report["size_bytes"].items():
        assert size == read_manifest(smollm2_builds[precision])["total_size"]
        measured = report["single_sequence"][precision]["48"]
        assert measured["time_to_first_token_s"] > 0 and measured["decode_tokens_per_s"] > 0
    assert report["size_reduction_fp32_over_int8"] > 1.5  # INT8 weights are a quarter of FP32's
    one, three = (report["concurrent_requests"]["int8"][n] for n in ("1", "3"))
    assert 0 < one["tokens"] <= 6 and one["tokens"] < three["tokens"] <= 18
    assert three["tokens_per_s"] == pytest.approx(three["tokens"] / three["seconds"], rel=0.05)
    # Two 300-character excerpts, the instructions and the question: well over 100 tokens.
    answer_prompt = report["answer_prompt_first_token"]
    assert answer_prompt["prompt_tokens"] > 100
    assert 0 < answer_prompt["warm_prefix_s"] and 0 < answer_prompt["cold_prefix_s"]
    at_once = report["answers_at_once"]
    assert at_once["answers"] == 1 and at_once["answers_per_s"] == pytest.approx(
        1 / at_once["seconds"], rel=0.05
    )
    quality = report["answer_quality"]
    assert quality["questions"] == 1  # q0 is Chinese and q1 unanswerable: only q2 is asked
    assert set(quality) == {
        "questions",
        "int8_containing_a_gold_answer",
        "fp32_containing_a_gold_answer",
        "int8_identical_to_fp32",
    }
    assert all(0 <= value <= 1 for value in quality.values())
    targets = report["targets"]
    assert targets["answer_prompt_first_token_at_most_s"]["measured"] == answer_prompt["warm_prefix_s"]
    for name, target in targets.items():
        at_most = name.endswith("_at_most_s")
        assert target["met"] == (
            target["measured"] <= target["wanted"] if at_most else target["measured"] >= target["wanted"]
        )


def test_generation_benchmark_without_a_build_names_the_command(dev_set, monkeypatch, tmp_path):
    monkeypatch.setenv("KB_MODELS_DIR", str(tmp_path / "no-builds"))
    with pytest.raises(GenerationBenchmarkError, match="build_models smollm2-135m-instruct"):
        bench_generation(docs=dev_set[0], questions=dev_set[1], model=SMOLLM2_135M.name)
