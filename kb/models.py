"""The knowledge base's data: collections of documents, their versions and chunks, the audit trail."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from pgvector.django import VectorField


class Collection(models.Model):
    """A knowledge base. Reader groups may search and ask; curator groups also manage documents."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    reader_groups = models.ManyToManyField(Group, blank=True, related_name="readable_collections")
    curator_groups = models.ManyToManyField(Group, blank=True, related_name="curated_collections")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Document(models.Model):
    """A document as curators see it; its content lives in the current DocumentVersion."""

    class Status(models.TextChoices):
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=500)
    source = models.CharField(max_length=1000, blank=True, help_text="Original file name or URL.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PROCESSING)
    # Set in the same transaction that makes a new version searchable (the atomic swap).
    current_version = models.ForeignKey(
        "DocumentVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["collection", "title"]

    def __str__(self):
        return self.title


class DocumentVersion(models.Model):
    """One immutable upload of a document, with the parse result and its ingestion job."""

    class JobState(models.TextChoices):
        QUEUED = "queued", "Queued"
        PARSING = "parsing", "Parsing"
        CHUNKING = "chunking", "Chunking"
        EMBEDDING = "embedding", "Embedding"
        INDEXING = "indexing", "Indexing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    file = models.FileField(upload_to="uploads/", max_length=500)
    original_name = models.CharField(max_length=500)
    mime = models.CharField(max_length=200, blank=True)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    parsed_text = models.TextField(blank=True)
    job_state = models.CharField(max_length=20, choices=JobState.choices, default=JobState.QUEUED)
    chunks_done = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["document", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["document", "number"], name="unique_version_number"),
        ]

    def __str__(self):
        return f"{self.document} v{self.number}"


class Chunk(models.Model):
    """A passage of a document version: what search finds and what answers cite."""

    version = models.ForeignKey(DocumentVersion, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField(help_text="Position of the chunk within its version.")
    text = models.TextField()
    page = models.PositiveIntegerField(null=True, blank=True)
    # Offsets into DocumentVersion.parsed_text, so a citation can highlight the exact passage.
    char_start = models.PositiveIntegerField()
    char_end = models.PositiveIntegerField()
    heading_path = models.JSONField(default=list, blank=True)
    entities = models.JSONField(default=list, blank=True)
    language = models.CharField(max_length=10, blank=True)
    token_count = models.PositiveIntegerField(default=0)
    # Stored while the version is embedded, so a restarted job resumes; the swap moves it into
    # the search index (retrieval.Passage) and clears it here.
    embedding = VectorField(dimensions=settings.KB_EMBEDDING_DIMENSIONS, null=True, blank=True)

    class Meta:
        ordering = ["version", "ordinal"]
        constraints = [
            models.UniqueConstraint(fields=["version", "ordinal"], name="unique_chunk_ordinal"),
        ]

    def __str__(self):
        return f"{self.version} #{self.ordinal}"


class AuditEvent(models.Model):
    """Who did what to which object, when and from where. Append-only, enforced in PostgreSQL."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # No foreign key constraint: the trail must survive the deletion of the user it names.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=50, db_index=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=100, blank=True)
    object_repr = models.CharField(max_length=500, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return (
            f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name or '-'} {self.action} {self.object_repr}"
        )
