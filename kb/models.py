"""The knowledge base's data: collections of documents, their versions and chunks, the audit trail."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from pgvector.django import VectorField

from kb import presets


class Collection(models.Model):
    """A knowledge base. Reader groups may search and ask; curator groups also manage documents."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    reader_groups = models.ManyToManyField(Group, blank=True, related_name="readable_collections")
    curator_groups = models.ManyToManyField(Group, blank=True, related_name="curated_collections")
    max_documents = models.PositiveIntegerField(
        null=True, blank=True, help_text="Upload quota: documents the collection may hold. Empty: no limit."
    )
    max_bytes = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        verbose_name="max bytes",
        help_text="Upload quota: bytes of files kept, all versions counted. Empty: no limit.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # How the collection is chunked, searched and answered: filled in from a preset (kb.presets)
    # when it is created, edited by its curators since.
    preset = models.CharField(
        max_length=20,
        choices=presets.Preset.choices,
        default=presets.Preset.GENERAL,
        db_default=presets.Preset.GENERAL,
        help_text="The domain the settings below started from.",
    )
    chunk_window = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(32), MaxValueValidator(2000)],
        help_text=(
            "Chunk length in the embedding model's word pieces, for documents uploaded or re-indexed "
            "after a change. Empty: the site's KB_CHUNK_WINDOW."
        ),
    )
    chunk_overlap = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Word pieces a chunk shares with the one before it. Empty: the site's KB_CHUNK_OVERLAP.",
    )
    answer_sources = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        verbose_name="retrieval depth",
        help_text="Passages retrieved for an answer. Empty: the site's KB_ANSWER_SOURCES.",
    )
    citation_threshold = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        verbose_name="citation strictness",
        help_text=(
            "Entailment probability (0–1) from which a passage backs, and is cited for, a sentence. "
            "Empty: the site's KB_FACTCHECK_THRESHOLD."
        ),
    )
    refusal_threshold = models.FloatField(
        default=0.0,
        db_default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text=(
            "Share of the answer's sentences (0–1) the fact-check must back, or the question is refused. "
            "0: one backed sentence is enough."
        ),
    )
    factcheck_policy = models.CharField(
        max_length=10,
        choices=presets.FactcheckPolicy.choices,
        blank=True,
        db_default="",
        verbose_name="fact-check policy",
        help_text="Empty: the site's KB_ANSWER_POLICY.",
    )
    sensitive_term_lists = ArrayField(
        models.CharField(max_length=100),
        blank=True,
        default=list,
        db_default=[],
        help_text=(
            "Categories of sensitive terms that screen questions in this collection, comma-separated. A "
            "category named by any collection screens only there; other terms screen every collection."
        ),
    )
    # Database defaults too: rows written by SQL, or by the previous release during a rolling
    # upgrade, get the general preset.
    answer_style = models.CharField(
        max_length=20,
        choices=presets.AnswerStyle.choices,
        default=presets.AnswerStyle.PLAIN,
        db_default=presets.AnswerStyle.PLAIN,
    )
    disclaimer = models.TextField(
        blank=True, db_default="", help_text="Shown under every answer that cites this collection."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def chunking(self) -> tuple[int, int]:
        """(window, overlap) this collection's documents are chunked with."""
        window = self.chunk_window or settings.KB_CHUNK_WINDOW
        overlap = self.chunk_overlap if self.chunk_overlap is not None else settings.KB_CHUNK_OVERLAP
        return window, overlap

    def clean(self):
        window, overlap = self.chunking
        if overlap >= window:
            raise ValidationError({"chunk_overlap": "The overlap must be shorter than the chunk window."})


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
    # Hidden by a reviewer: kept, but out of every search and answer until shown again.
    hidden = models.BooleanField(default=False)
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
    # The embedding model of the chunks' staged vectors (the index's when they were made).
    embedded_with = models.CharField(max_length=100, blank=True, db_default="")
    error = models.TextField(blank=True)
    # When the job was sent to the queue of its next stage; empty while a worker runs a stage.
    queued_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
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
    # Found while chunking, so that answers need not split the chunk again (empty for chunks indexed
    # before they were stored: those are split when an answer quotes them).
    sentences = models.JSONField(
        default=list, blank=True, help_text="(start, end) of each sentence, offsets within the text."
    )
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


class SensitiveTerm(models.Model):
    """A word or phrase that questions and answers are screened for, and what to do on a match."""

    class Action(models.TextChoices):
        BLOCK = "block", "Block the question or answer"
        MASK = "mask", "Mask the term"
        FLAG = "flag", "Let it through, flagged for review"

    term = models.CharField(max_length=200, unique=True, help_text="Matched case-insensitively.")
    category = models.CharField(max_length=100, blank=True)
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.FLAG)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["term"]

    def __str__(self):
        return self.term


class Answer(models.Model):
    """What the knowledge base replied. One answer may serve several identical questions (the
    frequent-question cache), so who asked lives on Question."""

    class Outcome(models.TextChoices):
        ANSWERED = "answered", _("Answered")
        NOT_FOUND = "not_found", _("Not found in the documents")
        BLOCKED = "blocked", _("Blocked by a safety rule")
        ENGINE_UNAVAILABLE = "engine_unavailable", _("Engine unavailable: sources only")

    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    text = models.TextField(blank=True, help_text="The answer as shown, with its [n] markers.")
    generated_text = models.TextField(blank=True, help_text="What the generator wrote, before checks.")
    language = models.CharField(max_length=10, blank=True)
    model = models.CharField(max_length=200, blank=True)
    # Markers the generator wrote that pointed to no source it was given: removed from the text.
    invalid_markers = models.PositiveIntegerField(default=0)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    generation_ms = models.PositiveIntegerField(null=True, blank=True)
    # Pieces the engine streamed (one token each from our engine), for the decoding speed.
    generated_tokens = models.PositiveIntegerField(default=0)
    # Safety findings, refusal reasons and the closest sources of a refusal, for the console.
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.get_outcome_display()}: {self.text[:80]}"


class Citation(models.Model):
    """Source [number] of an answer: the exact passage (version, page, character offsets) it cites."""

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="citations")
    number = models.PositiveIntegerField()
    chunk = models.ForeignKey(Chunk, null=True, on_delete=models.SET_NULL, related_name="+")
    version = models.ForeignKey(DocumentVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    document = models.ForeignKey(Document, null=True, on_delete=models.SET_NULL, related_name="+")
    collection = models.ForeignKey(Collection, null=True, on_delete=models.SET_NULL, related_name="+")
    title = models.CharField(max_length=500)
    page = models.PositiveIntegerField(null=True, blank=True)
    char_start = models.PositiveIntegerField()
    char_end = models.PositiveIntegerField()

    class Meta:
        ordering = ["answer", "number"]
        constraints = [
            models.UniqueConstraint(fields=["answer", "number"], name="unique_citation_number"),
        ]

    def __str__(self):
        return f"[{self.number}] {self.title}"


class AnswerSentence(models.Model):
    """One sentence of an answer with the fact-check verdict on it."""

    class Verdict(models.TextChoices):
        SUPPORTED = "supported", _("Supported")
        UNSUPPORTED = "unsupported", _("Unsupported")
        NO_CITATION = "no_citation", _("No citation")

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="sentences")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    # P(supported) from the entailment model against the best of its cited passages.
    support = models.FloatField(null=True, blank=True)
    # Why a sentence is unsupported beyond the model's score: numbers or names no source states.
    problems = models.JSONField(default=list, blank=True)
    # False when the policy dropped the sentence from the answer shown (kept here for review).
    shown = models.BooleanField(default=True)
    citations = models.ManyToManyField(Citation, blank=True, related_name="sentences")

    class Meta:
        ordering = ["answer", "ordinal"]

    def __str__(self):
        return self.text[:80]


class Conversation(models.Model):
    """A thread of questions by one user: each follow-up is answered in the context of the earlier
    ones. Private to its user; deleting it deletes its questions."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "-updated_at"])]

    def __str__(self):
        return self.title


class Question(models.Model):
    """A question a user asked, within the collections they chose, and the answer they got."""

    class Rewrite(models.TextChoices):
        NONE = "", "Not rewritten"
        ENGINE = "engine", "Rewritten by the engine"
        RULES = "rules", "Rewritten by rules"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="questions")
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="questions"
    )
    text = models.TextField()
    search_query = models.TextField(
        blank=True, help_text="The standalone question searched and answered, when a follow-up was rewritten."
    )
    rewrite = models.CharField(max_length=10, choices=Rewrite.choices, default=Rewrite.NONE, blank=True)
    language = models.CharField(max_length=10, blank=True)
    collections = models.ManyToManyField(Collection, blank=True, related_name="+")
    answer = models.ForeignKey(Answer, null=True, on_delete=models.SET_NULL, related_name="questions")
    cache_hit = models.BooleanField(default=False)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["conversation", "-created_at"])]

    def __str__(self):
        return self.text[:80]

    @property
    def searched(self) -> str:
        """What was searched and answered: the rewrite of a follow-up, else the question itself."""
        return self.search_query or self.text


class Feedback(models.Model):
    """A user's thumbs up or down on the answer to their question, with an optional comment."""

    class Rating(models.TextChoices):
        UP = "up", "Helpful"
        DOWN = "down", "Not helpful"

    question = models.OneToOneField(Question, on_delete=models.CASCADE, related_name="feedback")
    rating = models.CharField(max_length=10, choices=Rating.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self):
        return f"{self.get_rating_display()}: {self.question}"


class ApiToken(models.Model):
    """A key for the REST API. It acts as its user, optionally read-only or limited to some of the
    collections the user may read. Only a hash is stored: the key is shown once, when created."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=200, help_text="What the token is for, e.g. the app using it.")
    # The key's first characters, so people can tell their tokens apart without the key.
    prefix = models.CharField(max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    read_only = models.BooleanField(default=False, help_text="Search and ask only; no uploads or deletions.")
    collections = models.ManyToManyField(
        Collection, blank=True, related_name="+", help_text="Empty: every collection the user may read."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user", "name"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"


class AskBatch(models.Model):
    """Many questions submitted at once through the API, answered one by one by the worker."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Names of the collections to answer from; null: all the user may read when each is answered.
    collections = models.JSONField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    total = models.PositiveIntegerField()
    done = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "ask batches"

    def __str__(self):
        return f"Batch {self.pk}: {self.done}/{self.total}"


class AskBatchItem(models.Model):
    """One question of a batch; `question` is set once it is answered, `error` when it cannot be."""

    batch = models.ForeignKey(AskBatch, on_delete=models.CASCADE, related_name="items")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    question = models.ForeignKey(Question, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["batch", "ordinal"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "ordinal"], name="unique_batch_item_ordinal"),
        ]

    def __str__(self):
        return self.text[:80]


class Review(models.Model):
    """A curator's verdict on an answer from the review queue (unsupported sentences or negative
    feedback): correct as it stands, or corrected with the right answer."""

    class Verdict(models.TextChoices):
        CORRECT = "correct", _("Correct")
        CORRECTED = "corrected", _("Corrected")

    answer = models.OneToOneField(Answer, on_delete=models.CASCADE, related_name="review")
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    corrected_text = models.TextField(
        blank=True, help_text="The right answer, shown to whoever got this one."
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-reviewed_at"]

    def __str__(self):
        return f"{self.get_verdict_display()}: {self.answer}"
