"""Changing the embedding model (all-MiniLM-L6-v2 → multilingual-e5-small, both real): every passage
is re-embedded beside the vectors searches use, which stay MiniLM's, with MiniLM queries, until one
transaction swaps vectors and query model together; documents indexed meanwhile, a version embedded
before the swap and a run stopped half-way all end with e5 vectors."""

import io

import numpy as np
import pytest
from django.core.management import call_command

from kb.models import AuditEvent, Chunk, Collection
from kb.services.ingestion import Stage, embedding_input, run_stage, upload_document
from kb.services.reembedding import reembed
from retrieval import reembedding
from retrieval.dense import dense_top_k
from retrieval.embedding import embed_passages, embed_query
from retrieval.models import NextEmbedding, Passage
from retrieval.search import search
from tests.test_search_access import ingest

pytestmark = pytest.mark.django_db

MINILM, E5 = "all-MiniLM-L6-v2", "multilingual-e5-small"
LEAVE = b"# Annual leave\n\nEmployees may carry over five days of annual leave into the next year.\n"
TRAVEL = "# 差旅\n\n员工出差的住宿费用由公司报销，每晚不超过八百元。\n".encode()
PAYROLL = b"# Payroll\n\nSalaries are paid on the 25th of each month.\n"
QUESTION = "出差住宿费用可以报销多少？"


@pytest.fixture
def collection(settings):
    settings.KB_EMBEDDING_BATCH = 1  # a batch per passage: the test acts between batches
    collection = Collection.objects.create(name="Handbook")
    ingest(collection, "leave.md", LEAVE)
    ingest(collection, "travel.md", TRAVEL)
    return collection


def stored_vectors_are_of(model: str) -> bool:
    """Whether every passage's vector is `model`'s embedding of what ingestion embeds for it."""
    for chunk in Chunk.objects.select_related("version__document"):
        expected = embed_passages(
            model, [embedding_input(chunk.version.document.title, chunk.heading_path, chunk.text)]
        )
        stored = Passage.objects.get(pk=chunk.pk).embedding
        if not np.allclose(stored, expected[0], atol=1e-4):
            return False
    return True


def test_searches_keep_the_old_model_until_one_transaction_swaps_vectors_and_queries(
    collection, settings, django_capture_on_commit_callbacks
):
    assert stored_vectors_are_of(MINILM) and not stored_vectors_are_of(E5)
    minilm_query, e5_query = embed_query(MINILM, QUESTION), embed_query(E5, QUESTION)
    before = dense_top_k(minilm_query, scopes=[collection.pk], k=3, model=MINILM)
    settings.KB_EMBEDDING_MODEL = E5
    seen = []

    def meanwhile(done: int, total: int) -> None:
        # Mid-way the index answers MiniLM queries from MiniLM vectors, and e5 queries not at all.
        assert reembedding.active_model() == MINILM
        assert dense_top_k(minilm_query, scopes=[collection.pk], k=3, model=MINILM)[:2] == before
        assert dense_top_k(e5_query, scopes=[collection.pk], k=3, model=E5) == []
        if not seen:  # a document indexed during the re-embedding gets MiniLM's vector now, e5's later
            ingest(collection, "payroll.md", PAYROLL)
        seen.append((done, total))

    with django_capture_on_commit_callbacks(execute=True):  # the swap renews the scopes' cache versions
        result = reembed(actor_name="test", on_progress=meanwhile)
    assert (result["model"], result["previous_model"]) == (E5, MINILM)
    assert seen[-1][0] == seen[-1][1] == 3 and len(seen) >= 3
    assert reembedding.active_model() == E5
    assert stored_vectors_are_of(E5)
    assert not NextEmbedding.objects.exists()
    found = search(QUESTION, scopes=[collection.pk], mode="dense", k=3)
    assert [hit.passage_id for hit in found] == [
        passage_id for passage_id, _ in dense_top_k(e5_query, scopes=[collection.pk], k=3, model=E5)
    ]
    assert len(found) == 3
    assert Chunk.objects.get(pk=found[0].passage_id).version.document.title == "差旅"
    # A query embedded with another model than the stored vectors' finds nothing, never a mix.
    assert dense_top_k(minilm_query, scopes=[collection.pk], k=3, model=MINILM) == []
    assert set(AuditEvent.objects.values_list("action", flat=True)) >= {"reembed_started", "reembed_finished"}
    assert reembed(actor_name="test")["reembedded"] == 0  # nothing left to do


def test_a_version_embedded_before_the_swap_is_embedded_again_as_it_is_swapped_in(collection, settings):
    version = upload_document(collection=collection, name="payroll.md", content=io.BytesIO(PAYROLL)).version
    assert run_stage(version.pk, Stage.PARSE) and run_stage(version.pk, Stage.EMBED)
    version.refresh_from_db()
    assert version.embedded_with == MINILM
    settings.KB_EMBEDDING_MODEL = E5
    reembed(actor_name="test")
    run_stage(version.pk, Stage.INDEX)
    version.refresh_from_db()
    assert (version.job_state, version.embedded_with) == ("done", E5)
    assert stored_vectors_are_of(E5)


def test_a_stopped_re_embedding_resumes_where_it_stopped(collection, settings, capsys):
    settings.KB_EMBEDDING_MODEL = E5

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reembed(actor_name="test", on_progress=stop)
    assert reembedding.active_model() == MINILM and reembedding.progress() == (1, 2)
    call_command("reembed", "--status")
    assert (
        f"index embedded with {MINILM} (2 passages); re-embedding with {E5}: 1/2" in capsys.readouterr().out
    )
    call_command("reembed")
    assert f"index re-embedded with {E5} (was {MINILM}): 1 passages" in capsys.readouterr().out
    assert stored_vectors_are_of(E5)
