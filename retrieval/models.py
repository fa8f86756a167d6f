"""The search index in PostgreSQL: passages with their vectors, BM25 postings and statistics.

Passages are known here only by the caller's ids (kb's chunk ids) and a scope id (kb's collection
id): nothing refers to the caller's tables, so the dependency stays kb -> retrieval. Statistics are
kept per scope, so a query over the scopes a user may read sees exactly the corpus of those scopes.
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from pgvector.django import HnswIndex, VectorField


class Passage(models.Model):
    """A searchable passage: its scope, its length in search tokens and its embedding."""

    id = models.BigIntegerField(primary_key=True)
    scope = models.BigIntegerField(db_index=True)
    length = models.PositiveIntegerField()
    # L2-normalised, so cosine distance ranks like the dot product; made by EmbeddingState.model.
    embedding = VectorField(dimensions=settings.KB_EMBEDDING_DIMENSIONS, null=True)

    class Meta:
        indexes = [
            HnswIndex(
                name="passage_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
        ]

    def __str__(self):
        return f"passage {self.id} (scope {self.scope})"


class PassageTerms(models.Model):
    """A passage's distinct search terms: the posting blocks that hold it, for removing or moving
    it. A table of their own: in the passage table they pushed the vectors out of line (TOAST),
    and exact vector scans became five times slower."""

    passage = models.OneToOneField(Passage, primary_key=True, on_delete=models.CASCADE, related_name="terms")
    terms = ArrayField(models.TextField())

    def __str__(self):
        return f"terms of passage {self.passage_id}"


class PostingBlock(models.Model):
    """The postings of one term in one scope for a block of neighbouring passage ids, packed
    (`retrieval.postings`): per passage its id, the term's frequency in it and its length."""

    scope = models.BigIntegerField()
    term = models.TextField()
    block = models.BigIntegerField()  # passage id >> postings.BLOCK_BITS
    # Stored uncompressed (migration 0005): numbers barely compress, and a query reads them all.
    postings = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["term", "scope", "block"], name="unique_posting_block")
        ]

    def __str__(self):
        return f"{self.term} in block {self.block} of scope {self.scope}"


class ScopeStats(models.Model):
    """Number of passages and their total length in one scope."""

    scope = models.BigIntegerField(primary_key=True)
    passages = models.BigIntegerField()
    total_length = models.BigIntegerField()

    def __str__(self):
        return f"scope {self.scope}: {self.passages} passages"


class TermStats(models.Model):
    """In how many passages of a scope a term occurs (its document frequency)."""

    scope = models.BigIntegerField()
    term = models.TextField()
    passages = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "term"], name="unique_term_stats")]

    def __str__(self):
        return f"{self.term} in {self.passages} passages of scope {self.scope}"


class NextEmbedding(models.Model):
    """A passage's vector made by a re-embedding with EmbeddingState.next_model, swapped into
    Passage.embedding when every passage has one. A table of its own, so the passage table and the
    plans of searches over it stay as they are."""

    # No foreign key in the database: a passage removed while a re-embedding stores its vector
    # would otherwise fail its removal's commit; a row left behind so is ignored and then deleted.
    passage = models.OneToOneField(
        Passage,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="next_embedding",
        db_constraint=False,
    )
    embedding = VectorField(dimensions=settings.KB_EMBEDDING_DIMENSIONS)

    def __str__(self):
        return f"next embedding of passage {self.passage_id}"


class EmbeddingState(models.Model):
    """One row: the embedding model the passages' vectors come from, with which queries are
    embedded, and the model a re-embedding fills NextEmbedding with (blank when none)."""

    model = models.CharField(max_length=100)
    next_model = models.CharField(max_length=100, blank=True)

    def __str__(self):
        return self.model + (f" (re-embedding with {self.next_model})" if self.next_model else "")
