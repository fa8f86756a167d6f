"""What the API reads and writes. Output serializers document the responses in the OpenAPI schema."""

from rest_framework import serializers

from kb.models import (
    Answer,
    AnswerSentence,
    AskBatch,
    AskBatchItem,
    Citation,
    Collection,
    Conversation,
    Document,
    DocumentVersion,
    Feedback,
    Question,
    Review,
)
from kb.selectors import correction_of, disclaimers, feedback_on
from kb.services.batches import MAX_QUESTIONS
from kb.services.feedback import MAX_COMMENT_CHARACTERS
from retrieval.search import MODES

MAX_TOP_K = 50


# --- collections, documents and their ingestion jobs -----------------------------------------


class CollectionSerializer(serializers.ModelSerializer):
    """A collection and how it answers (its preset's settings as edited since; null: the site's)."""

    documents = serializers.IntegerField(source="document_count", read_only=True)
    can_curate = serializers.SerializerMethodField()

    class Meta:
        model = Collection
        fields = ["id", "name", "description", "documents", "can_curate", "created_at", "preset"]
        fields += ["chunk_window", "chunk_overlap", "answer_sources", "citation_threshold"]
        fields += ["refusal_threshold", "factcheck_policy", "answer_style", "disclaimer"]

    def get_can_curate(self, collection) -> bool:
        return collection.pk in self.context["curated"]


class JobSerializer(serializers.ModelSerializer):
    """A document version and the ingestion job that indexes it (the job's id is the version's)."""

    document = serializers.IntegerField(source="document_id", read_only=True)
    title = serializers.CharField(source="document.title", read_only=True)
    collection = serializers.CharField(source="document.collection.name", read_only=True)
    state = serializers.ChoiceField(
        source="job_state", choices=DocumentVersion.JobState.choices, read_only=True
    )
    current = serializers.SerializerMethodField()

    class Meta:
        model = DocumentVersion
        fields = [
            "id",
            "document",
            "title",
            "collection",
            "number",
            "current",
            "original_name",
            "mime",
            "size",
            "sha256",
            "state",
            "chunks_done",
            "chunks_total",
            "error",
            "created_at",
            "updated_at",
        ]

    def get_current(self, version) -> bool:
        return version.document.current_version_id == version.pk


class DocumentSerializer(serializers.ModelSerializer):
    collection = serializers.CharField(source="collection.name", read_only=True)
    current_version = serializers.IntegerField(
        source="current_version.number", allow_null=True, read_only=True
    )
    latest_job = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = ["id", "title", "source", "collection", "status", "current_version", "latest_job"]
        fields += ["created_at", "updated_at"]

    def get_latest_job(self, document) -> JobSerializer(allow_null=True):
        latest = document.versions.select_related("document__collection").order_by("-number").first()
        return JobSerializer(latest).data if latest else None


class UploadSerializer(serializers.Serializer):
    collection = serializers.CharField(help_text="Name of the collection to upload into.")
    file = serializers.FileField(max_length=500, allow_empty_file=True)
    title = serializers.CharField(required=False, allow_blank=True, max_length=500)


class UploadResultSerializer(serializers.Serializer):
    created = serializers.BooleanField(help_text="False when the content equals the latest version's.")
    document = DocumentSerializer()
    job = JobSerializer()


# --- search ---------------------------------------------------------------------------------


class ScopeField(serializers.ListField):
    def __init__(self, **kwargs):
        kwargs.setdefault("child", serializers.CharField(max_length=200))
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_empty", False)
        kwargs.setdefault("max_length", 100)
        kwargs.setdefault("help_text", "Names of collections to cover; all you may read when left out.")
        super().__init__(**kwargs)


class SearchSerializer(serializers.Serializer):
    query = serializers.CharField(trim_whitespace=False)
    collections = ScopeField()
    mode = serializers.ChoiceField(choices=MODES, default="hybrid")
    top_k = serializers.IntegerField(min_value=1, max_value=MAX_TOP_K, default=10)


class SearchDocumentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()


class SearchResultSerializer(serializers.Serializer):
    chunk = serializers.IntegerField(source="chunk.pk")
    text = serializers.CharField(source="chunk.text")
    score = serializers.FloatField()
    bm25_rank = serializers.IntegerField(allow_null=True)
    dense_rank = serializers.IntegerField(allow_null=True)
    document = SearchDocumentSerializer(source="chunk.version.document")
    collection = serializers.CharField(source="chunk.version.document.collection.name")
    version = serializers.IntegerField(source="chunk.version.number")
    page = serializers.IntegerField(source="chunk.page", allow_null=True)
    char_start = serializers.IntegerField(source="chunk.char_start")
    char_end = serializers.IntegerField(source="chunk.char_end")
    heading_path = serializers.ListField(source="chunk.heading_path", child=serializers.CharField())


class SearchResponseSerializer(serializers.Serializer):
    results = SearchResultSerializer(many=True)


# --- questions and answers -------------------------------------------------------------------


class AskSerializer(serializers.Serializer):
    question = serializers.CharField(trim_whitespace=False)
    collections = ScopeField()
    conversation = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="One of the caller's conversations: the question is a follow-up in it, rewritten into a "
        "standalone question (`search_query`) before it is searched. Left out: a question on its own.",
    )
    stream = serializers.BooleanField(
        default=False,
        help_text="Answer as server-sent events: `token` events while the answer is written, then one "
        "`answer` event holding the Question object (or an `error` event).",
    )


class CitationSerializer(serializers.ModelSerializer):
    collection = serializers.CharField(source="collection.name", allow_null=True)
    version = serializers.IntegerField(source="version.number", allow_null=True)
    passage = serializers.CharField(help_text="The cited text, exactly as parsed from the document.")

    class Meta:
        model = Citation
        fields = ["number", "document", "title", "collection", "version", "page", "char_start", "char_end"]
        fields += ["passage"]


class SentenceSerializer(serializers.ModelSerializer):
    citations = serializers.SerializerMethodField()

    class Meta:
        model = AnswerSentence
        fields = ["ordinal", "text", "verdict", "support", "citations"]

    def get_citations(self, sentence) -> list[int]:
        return sorted(citation.number for citation in sentence.citations.all())


class ClosestSourceSerializer(serializers.Serializer):
    chunk = serializers.IntegerField()
    title = serializers.CharField()
    page = serializers.IntegerField(allow_null=True)


class CorrectionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Review
        fields = ["corrected_text", "reviewed_at"]


class AnswerSerializer(serializers.ModelSerializer):
    """The answer as shown: sentences the policy dropped are not part of it."""

    sentences = serializers.SerializerMethodField()
    correction = serializers.SerializerMethodField()
    citations = serializers.SerializerMethodField()
    disclaimers = serializers.SerializerMethodField()
    closest_sources = serializers.SerializerMethodField()

    class Meta:
        model = Answer
        fields = ["outcome", "text", "language", "model", "first_token_ms", "generation_ms", "sentences"]
        fields += ["citations", "disclaimers", "closest_sources", "correction"]

    def get_correction(self, answer) -> CorrectionSerializer(allow_null=True):
        """The right answer, when a reviewer corrected this one."""
        review = correction_of(answer)
        return CorrectionSerializer(review).data if review else None

    def get_sentences(self, answer) -> SentenceSerializer(many=True):
        shown = answer.sentences.filter(shown=True).prefetch_related("citations")
        return SentenceSerializer(shown, many=True).data

    def get_citations(self, answer) -> CitationSerializer(many=True):
        citations = self.context["citations"].filter(answer=answer).select_related("collection", "version")
        return CitationSerializer(citations.order_by("number"), many=True).data

    def get_disclaimers(self, answer) -> list[str]:
        """The disclaimers of the cited collections the caller may read."""
        return disclaimers(self.context["citations"].filter(answer=answer).select_related("collection"))

    def get_closest_sources(self, answer) -> ClosestSourceSerializer(many=True):
        """Passages that matched best when the documents hold no answer (or the engine is down)."""
        return ClosestSourceSerializer(answer.detail.get("closest_sources", []), many=True).data


class FeedbackSerializer(serializers.ModelSerializer):
    rating = serializers.ChoiceField(choices=Feedback.Rating.choices)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=MAX_COMMENT_CHARACTERS)

    class Meta:
        model = Feedback
        fields = ["rating", "comment", "updated_at"]
        read_only_fields = ["updated_at"]


class QuestionSerializer(serializers.ModelSerializer):
    question = serializers.CharField(source="text")
    search_query = serializers.CharField(
        source="searched", help_text="What was searched and answered: a follow-up's rewrite, or the question."
    )
    collections = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    answer = AnswerSerializer(allow_null=True)
    feedback = serializers.SerializerMethodField()

    class Meta:
        model = Question
        fields = ["id", "conversation", "question", "search_query", "rewrite", "language", "collections"]
        fields += ["created_at", "cache_hit", "latency_ms", "answer", "feedback"]

    def get_feedback(self, question) -> FeedbackSerializer(allow_null=True):
        feedback = feedback_on(question)
        return FeedbackSerializer(feedback).data if feedback else None


class ConversationSerializer(serializers.ModelSerializer):
    questions = serializers.IntegerField(source="turns", read_only=True)

    class Meta:
        model = Conversation
        fields = ["id", "title", "questions", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


# --- batches --------------------------------------------------------------------------------


class BatchSubmitSerializer(serializers.Serializer):
    questions = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False), min_length=1, max_length=MAX_QUESTIONS
    )
    collections = ScopeField()


class BatchItemSerializer(serializers.ModelSerializer):
    question = serializers.CharField(source="text")
    result = QuestionSerializer(source="question", allow_null=True, help_text="Set once answered.")
    error = serializers.CharField(help_text="Why the question could not be answered; empty otherwise.")

    class Meta:
        model = AskBatchItem
        fields = ["ordinal", "question", "result", "error"]


class BatchSerializer(serializers.ModelSerializer):
    collections = serializers.ListField(child=serializers.CharField(), allow_null=True)
    items = BatchItemSerializer(many=True)

    class Meta:
        model = AskBatch
        fields = ["id", "state", "total", "done", "collections", "created_at", "updated_at", "items"]


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
