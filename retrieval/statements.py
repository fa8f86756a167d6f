"""Search statements with a time limit, so one costly query cannot hold the database for others.

A query is bounded before it reaches PostgreSQL (RETRIEVAL_MAX_QUERY_CHARS, and BM25 uses at most
RETRIEVAL_BM25_MAX_TERMS terms), but the cost of a statement also grows with the corpus; the
statement timeout bounds what is left, and the person who asked is told why.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import OperationalError, connection, transaction
from psycopg.errors import QueryCanceled

from retrieval.errors import SearchTooCostly


@contextmanager
def limited_cursor() -> Iterator:
    """A cursor in a transaction whose statements PostgreSQL cancels after the time limit."""
    milliseconds = settings.RETRIEVAL_STATEMENT_TIMEOUT_MS
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{milliseconds}ms"])
            yield cursor
    except OperationalError as error:
        if isinstance(error.__cause__, QueryCanceled):
            raise SearchTooCostly(
                f"the search took longer than {milliseconds / 1000:g} s and was stopped;"
                " fewer or more specific words search faster"
            ) from error
        raise
