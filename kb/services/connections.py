"""Database connections around long waits on the engine."""

from django.db import connection


def release_connection() -> None:
    """Give this thread's database connection back before a call that can take a minute (the engine
    writing an answer): in the web server it returns to the pool for other requests, elsewhere it
    closes. The next query takes one again. A connection inside a transaction is kept: closing it
    would roll the transaction back."""
    if not connection.in_atomic_block:
        connection.close()
