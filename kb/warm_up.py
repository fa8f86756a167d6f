"""The models a process needs, loaded before it takes its first request or task.

Loaded lazily instead, the first searches and questions after a start would each wait seconds,
and concurrent first requests would each load their own copy (functools.cache does not hold
back a second caller while the first one loads): 43 copies of the encoder on a cold server under
`bench load`.
"""

from django.conf import settings
from django.db import DatabaseError

from kb.answering.factcheck import SIMILARITY_MODEL, entailment_model
from kb.ingestion.sentences import english_pipeline
from retrieval.embedding import embed_query, load_encoder, load_tokenizer
from retrieval.reembedding import active_model
from retrieval.tokenizer import search_tokens


def load_models() -> None:
    embed_query(_index_model(), "warm-up")  # query embeddings (exports the ONNX encoder once)
    load_encoder(SIMILARITY_MODEL)  # the fact-check's related-sentence check
    entailment_model()  # the answers' fact-check
    english_pipeline()  # answer sentences
    search_tokens("预热 warm-up")  # jieba's dictionary (Chinese queries) and the stop words


def load_ingestion_models(queues: set[str]) -> None:
    """What the ingestion stages of these queues load: otherwise each worker process's first
    documents wait for them (8 s of the first tasks' time, measured on the dev documents)."""
    if "parse" in queues:
        load_tokenizer(settings.KB_EMBEDDING_MODEL)  # chunk windows
        english_pipeline()  # sentences and entities
    if "embed" in queues:
        load_encoder(_index_model())
    if "index" in queues:
        search_tokens("预热 warm-up")  # BM25 postings


def _index_model() -> str:
    """The model the index's vectors come from, which queries and new passages are embedded with
    (after `reembed --model` it need not be KB_EMBEDDING_MODEL); that one while the database
    cannot say."""
    try:
        return active_model()
    except DatabaseError:
        return settings.KB_EMBEDDING_MODEL
