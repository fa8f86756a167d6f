"""`bench search` on a small generated corpus: it measures every retriever and what a passage
costs in PostgreSQL, and leaves nothing behind."""

import json

import pytest

from retrieval.benchmark import BENCH_SCOPE, bench_search
from retrieval.models import Passage

# Paragraphs longer than 200 characters: the benchmark blends their embeddings into its vectors.
PARAGRAPH = (
    "Employees in office {n} may carry over {days} days of annual leave into the next year. "
    "Requests go to the line manager of office {n}, who answers within {days} working days. "
    "Unused days lapse at the end of March each year."
)
DOCUMENT = "# Leave\n\n" + "\n\n".join(PARAGRAPH.format(n=n, days=n % 7 + 1) for n in range(40))


@pytest.mark.django_db(transaction=True)
def test_search_benchmark_reports_speed_and_storage_per_passage(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text(DOCUMENT)
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"id": "q", "question": "How many days of leave carry over?"}) + "\n")
    report = bench_search(chunks=300, docs=docs, questions=questions, queries=3)
    assert report["chunks"] == 300 and report["hybrid"]
    storage = report["storage_bytes_per_passage"]
    assert storage["passages"] >= 300
    # A 384-dimension float vector alone is 1,536 bytes, in the table and again in the HNSW graph.
    assert storage["passage_table"] > 1536 and storage["hnsw_index"] > 1536
    assert storage["postings_with_indexes"] > 0
    assert not Passage.objects.filter(scope=BENCH_SCOPE).exists()
