"""Indexing and search over chunks: tokenizers, BM25 in PostgreSQL, pgvector, fusion, caching.

No HTTP and no templates here; kb/ calls into this package, never the other way round.
"""
