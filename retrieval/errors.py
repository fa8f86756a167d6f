"""Why a search could not be run, in words for the person who asked."""


class InvalidQuery(ValueError):
    """A query that cannot be searched; the message says why, for the person who asked."""


class SearchTooCostly(InvalidQuery):
    """PostgreSQL stopped the search's statement at RETRIEVAL_STATEMENT_TIMEOUT_MS."""
