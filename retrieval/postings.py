"""BM25 postings packed in blocks: reading them for a query, and changing them with the passages.

A block (`PostingBlock`) holds the postings of one term in one scope for the passages whose ids
share `id >> BLOCK_BITS`: per passage its id, the term's frequency in it and its length, as
`POSTING` records sorted by id. A query reads a few hundred such values instead of tens of
thousands of rows, and scores them with numpy (README, Performance); blocks of neighbouring ids
keep small what indexing a new passage rewrites, since new chunks get the highest ids.

Writers to one scope take turns (`lock_scopes`): a block is read, changed and written back whole.
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import psycopg
from django.db import connection

# Big-endian, so the migration from per-posting rows could pack them in SQL (int8send, int4send).
POSTING = np.dtype([("passage", ">i8"), ("frequency", ">i4"), ("length", ">i4")])
BLOCK_BITS = 10

Key = tuple[str, int]  # (term, block)


def block_of(passage_id: int) -> int:
    return passage_id >> BLOCK_BITS


def lock_scopes(scopes: Iterable[int]) -> None:
    """Take the write turn of each scope until the transaction ends, in one order for everyone
    (so two writers cannot wait for each other)."""
    with connection.cursor() as cursor:
        for scope in sorted(set(scopes)):
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('retrieval postings', %s))", [scope]
            )


def add(scope: int, new: dict[Key, np.ndarray]) -> None:
    """Put postings (POSTING arrays by block) into the scope's blocks."""
    stored = _read(scope, new)
    _write(scope, {key: _merge(stored.get(key), rows) for key, rows in new.items()})


def take(scope: int, keys: Iterable[Key], passage_ids: Iterable[int]) -> dict[Key, np.ndarray]:
    """Remove the postings of the passages from the given blocks; returns what was removed."""
    stored = _read(scope, keys)
    if not stored:
        return {}
    # One np.isin over all the blocks: a collection's worth of blocks one by one took minutes.
    rows = np.concatenate(list(stored.values()))
    leaving = np.isin(rows["passage"], np.fromiter(passage_ids, dtype=np.int64))
    starts = np.cumsum([0] + [len(block) for block in stored.values()])[:-1]
    leaving_per_block = np.add.reduceat(leaving, starts)
    staying_per_block = np.diff(np.append(starts, len(rows))) - leaving_per_block
    taken = np.split(rows[leaving], np.cumsum(leaving_per_block)[:-1])
    kept = np.split(rows[~leaving], np.cumsum(staying_per_block)[:-1])
    _write(scope, dict(zip(stored, kept, strict=True)))
    return dict(zip(stored, taken, strict=True))


def drop_scope(scope: int) -> None:
    """Remove every posting of the scope."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM retrieval_postingblock WHERE scope = %s", [scope])


def read_for_query(terms: list[str], scopes: list[int]) -> tuple[list[str], list[int], np.ndarray]:
    """Every posting of the terms in the scopes: the term of each block read, the number of
    postings in it, and all the postings, block after block, ordered by term and block (so one
    term's postings in one scope come in id order)."""
    with _binary_cursor() as cursor:
        cursor.execute(
            "SELECT term, postings FROM retrieval_postingblock"
            " WHERE term = ANY(%s::text[]) AND scope = ANY(%s::bigint[]) ORDER BY term, block",
            [terms, scopes],
            binary=True,
        )
        rows = cursor.fetchall()
    return (
        [term for term, _ in rows],
        [len(postings) // POSTING.itemsize for _, postings in rows],
        np.frombuffer(b"".join(postings for _, postings in rows), dtype=POSTING),
    )


def _merge(stored: np.ndarray | None, new: np.ndarray) -> np.ndarray:
    rows = new if stored is None else np.concatenate([stored, new])
    return rows[np.argsort(rows["passage"], kind="stable")]


def _read(scope: int, keys: Iterable[Key]) -> dict[Key, np.ndarray]:
    """The stored blocks among `keys`. Filtered by terms and by blocks, then to the exact pairs here:
    joined with the pairs instead, the query was planned as a nested loop over every block of the
    scope whenever the scope's statistics were stale, as they are while a new collection fills
    (115-250 ms a document on the dev corpus instead of 3 ms, and growing with the scope)."""
    keys = set(keys)
    if not keys:
        return {}
    with _binary_cursor() as cursor:
        cursor.execute(
            "SELECT term, block, postings FROM retrieval_postingblock"
            " WHERE scope = %s AND term = ANY(%s::text[]) AND block = ANY(%s::bigint[])",
            [scope, sorted({term for term, _ in keys}), sorted({block for _, block in keys})],
            binary=True,
        )
        return {
            (term, block): np.frombuffer(postings, dtype=POSTING)
            for term, block, postings in cursor.fetchall()
            if (term, block) in keys
        }


def _write(scope: int, blocks: dict[Key, np.ndarray]) -> None:
    """Store the blocks as they now are; an empty one is deleted."""
    full = sorted(key for key, rows in blocks.items() if len(rows))
    empty = sorted(key for key, rows in blocks.items() if not len(rows))
    with _binary_cursor() as cursor:
        if full:
            cursor.execute(
                "INSERT INTO retrieval_postingblock (scope, term, block, postings)"
                " SELECT %s, term, block, postings FROM unnest(%s::text[], %s::bigint[], %s::bytea[])"
                " AS k(term, block, postings)"
                " ON CONFLICT (term, scope, block) DO UPDATE SET postings = EXCLUDED.postings",
                [
                    scope,
                    [term for term, _ in full],
                    [block for _, block in full],
                    # astype: np.concatenate returns native byte order, not the stored one.
                    [blocks[key].astype(POSTING, copy=False).tobytes() for key in full],
                ],
            )
        if empty:
            # A statement per block, each a lookup in the unique index. Joined with the list of
            # pairs, the delete was planned as a nested loop over every block of the scope while
            # its statistics were stale (see _read): 1.4 s to remove one dev document.
            terms_by_block = defaultdict(list)
            for term, block in empty:
                terms_by_block[block].append(term)
            cursor.executemany(
                "DELETE FROM retrieval_postingblock"
                " WHERE scope = %s AND block = %s AND term = ANY(%s::text[])",
                [(scope, block, terms) for block, terms in sorted(terms_by_block.items())],
            )


@contextmanager
def _binary_cursor() -> Iterator[psycopg.Cursor]:
    """A psycopg cursor of Django's connection that binds parameters on the server and returns
    binary results: with Django's cursors (text, quoted by the client) hex-encoding the blocks and
    quoting the arrays of keys took more time than PostgreSQL's part of a search or a write."""
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor
