"""The API's endpoints. Each one checks access through kb.api.access and calls a service."""

from django.db.models import Count, Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from kb.api import serializers as s
from kb.api.access import WritableToken, collection_names, visible_collections
from kb.models import AskBatch, AskBatchItem, Document, DocumentVersion
from kb.selectors import can_curate, curated_collections, own_conversations, own_questions, visible_citations
from kb.services.answers import ask, normalise_question
from kb.services.batches import submit_batch
from kb.services.conversations import delete_conversation, rename_conversation, start_conversation
from kb.services.documents import delete_document
from kb.services.feedback import give_feedback
from kb.services.ingestion import upload_document
from kb.services.rate_limits import consume
from kb.services.search import UnknownCollection, search_chunks, search_scopes
from kb.streaming import answer_stream

ERRORS = {
    400: OpenApiResponse(s.ErrorSerializer, description="Invalid request"),
    401: OpenApiResponse(s.ErrorSerializer, description="Missing or invalid token"),
    403: OpenApiResponse(s.ErrorSerializer, description="Not allowed (e.g. a read-only token)"),
    404: OpenApiResponse(s.ErrorSerializer, description="Not found, or not visible to the caller"),
    415: OpenApiResponse(
        s.ErrorSerializer, description="The body is not of a content type the endpoint reads"
    ),
    429: OpenApiResponse(
        s.ErrorSerializer, description="Over the caller's rate limit: retry after Retry-After seconds"
    ),
    500: OpenApiResponse(s.ErrorSerializer, description="An unexpected failure, logged on the server"),
}


def errors(*codes: int) -> dict:
    """The error responses of an operation: those named, and 401 and 500 that any may answer."""
    return {code: ERRORS[code] for code in (*codes, 401, 500)}


def body_errors(*codes: int) -> dict:
    """The same for an operation with a request body, which may also be malformed or of a wrong type."""
    return errors(400, 415, *codes)


def answer_context(request) -> dict:
    """What answer serializers need: citations are shown only from collections the caller may read."""
    return {"request": request, "citations": visible_citations(request.user)}


def question_payload(request, question) -> dict:
    return s.QuestionSerializer(question, context=answer_context(request)).data


class AnswerViewMixin:
    def get_serializer_context(self):
        return {**super().get_serializer_context(), **answer_context(self.request)}


# --- collections -----------------------------------------------------------------------------


@extend_schema(tags=["collections"], responses={200: s.CollectionSerializer(many=True), **errors()})
class CollectionList(generics.ListAPIView):
    """Collections the caller may read."""

    serializer_class = s.CollectionSerializer

    def get_queryset(self):
        return visible_collections(self.request).annotate(document_count=Count("documents")).order_by("name")

    def get_serializer_context(self):
        curated = set(curated_collections(self.request.user).values_list("pk", flat=True))
        return {**super().get_serializer_context(), "curated": curated}


# --- documents and jobs ------------------------------------------------------------------------


def _documents(request):
    return (
        Document.objects.filter(collection__in=visible_collections(request))
        .select_related("collection", "current_version")
        .order_by("-updated_at", "-pk")
    )


def _jobs(request):
    return (
        DocumentVersion.objects.filter(document__collection__in=visible_collections(request))
        .select_related("document__collection")
        .order_by("-created_at", "-pk")
    )


def _curated_collection(request, name: str):
    collection = visible_collections(request).filter(name=name).first()
    if collection is None:
        raise UnknownCollection(f"no collection named {name!r}")
    if not can_curate(request.user, collection):
        raise PermissionDenied("you may read this collection but not change its documents")
    return collection


COLLECTION_FILTER = OpenApiParameter("collection", str, description="Only this collection's (by name).")


@extend_schema(tags=["documents"])
class DocumentList(generics.ListCreateAPIView):
    permission_classes = [*generics.ListCreateAPIView.permission_classes, WritableToken]
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = s.DocumentSerializer

    def get_queryset(self):
        documents = _documents(self.request)
        if name := self.request.query_params.get("collection"):
            documents = documents.filter(collection__name=name)
        return documents

    @extend_schema(
        parameters=[COLLECTION_FILTER], responses={200: s.DocumentSerializer(many=True), **errors()}
    )
    def get(self, request, *args, **kwargs):
        """Documents in the collections the caller may read, most recently changed first."""
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=s.UploadSerializer,
        responses={
            202: OpenApiResponse(
                s.UploadResultSerializer, description="Queued for ingestion: follow the job"
            ),
            200: OpenApiResponse(s.UploadResultSerializer, description="Same content as the latest version"),
            **body_errors(403, 429),
        },
    )
    def post(self, request, *args, **kwargs):
        """Upload a file (multipart). A file of the same name in the collection is a new version."""
        consume("upload", request)
        upload = s.UploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        result = upload_document(
            collection=_curated_collection(request, data["collection"]),
            name=data["file"].name,
            content=data["file"],
            user=request.user,
            title=data.get("title", ""),
            request=request,
        )
        version = DocumentVersion.objects.select_related("document__collection").get(pk=result.version.pk)
        body = {"created": result.created, "document": version.document, "job": version}
        return Response(
            s.UploadResultSerializer(body).data,
            status=status.HTTP_202_ACCEPTED if result.created else status.HTTP_200_OK,
        )


@extend_schema(tags=["documents"])
class DocumentDetail(generics.RetrieveDestroyAPIView):
    permission_classes = [*generics.RetrieveDestroyAPIView.permission_classes, WritableToken]
    serializer_class = s.DocumentSerializer

    def get_queryset(self):
        return _documents(self.request)

    @extend_schema(responses={200: s.DocumentSerializer, **errors(404)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(responses={204: None, **errors(403, 404)})
    def delete(self, request, *args, **kwargs):
        """Delete the document and all its versions; no later search or answer finds it."""
        return super().delete(request, *args, **kwargs)

    def perform_destroy(self, document):
        if not can_curate(self.request.user, document.collection):
            raise PermissionDenied("you may read this collection but not change its documents")
        delete_document(document, user=self.request.user, request=self.request)


@extend_schema(tags=["documents"], responses={200: s.JobSerializer(many=True), **errors(404)})
class DocumentVersions(generics.ListAPIView):
    """Every version of a document, newest first, each with its ingestion job."""

    serializer_class = s.JobSerializer

    def get_queryset(self):
        document = generics.get_object_or_404(_documents(self.request), pk=self.kwargs["pk"])
        return document.versions.select_related("document__collection").order_by("-number")


STATE_FILTER = OpenApiParameter("state", str, enum=DocumentVersion.JobState.values)


@extend_schema(tags=["jobs"], parameters=[STATE_FILTER, COLLECTION_FILTER])
class JobList(generics.ListAPIView):
    """Ingestion jobs, newest first."""

    serializer_class = s.JobSerializer

    def get_queryset(self):
        jobs = _jobs(self.request)
        if state := self.request.query_params.get("state"):
            jobs = jobs.filter(job_state=state)
        if name := self.request.query_params.get("collection"):
            jobs = jobs.filter(document__collection__name=name)
        return jobs

    @extend_schema(responses={200: s.JobSerializer(many=True), **errors()})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["jobs"], responses={200: s.JobSerializer, **errors(404)})
class JobDetail(generics.RetrieveAPIView):
    """An ingestion job: state, chunks done of total, and the reason when it failed."""

    serializer_class = s.JobSerializer

    def get_queryset(self):
        return _jobs(self.request)


# --- search and questions ----------------------------------------------------------------------


class Search(APIView):
    @extend_schema(
        tags=["search"],
        request=s.SearchSerializer,
        responses={200: s.SearchResponseSerializer, **body_errors(429)},
    )
    def post(self, request):
        """The best passages for a query in the collections the caller may read."""
        consume("search", request)
        query = s.SearchSerializer(data=request.data)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        results = search_chunks(
            request.user,
            data["query"],
            collections=collection_names(request, data.get("collections")),
            mode=data["mode"],
            k=data["top_k"],
        )
        return Response(s.SearchResponseSerializer({"results": results}).data)


class Ask(APIView):
    @extend_schema(
        tags=["questions"],
        request=s.AskSerializer,
        responses={
            (200, "application/json"): OpenApiResponse(
                s.QuestionSerializer, description="The question and its answer"
            ),
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR,
                description="With `stream: true`: a `search` event ({query}) when a follow-up was "
                "rewritten, `token` events ({text}), then an `answer` event holding the Question object, "
                "or an `error` event ({code, message})",
            ),
            **body_errors(404, 429),
        },
    )
    def post(self, request):
        """Ask a question; the answer cites the passages it rests on, with a verdict per sentence."""
        consume("ask", request)
        asked = s.AskSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        data = asked.validated_data
        question = normalise_question(data["question"])
        collections = collection_names(request, data.get("collections"))
        search_scopes(request.user, collections)  # an unknown collection is a 400 before any stream starts
        conversation = None
        if data.get("conversation") is not None:
            conversation = own_conversations(request.user).filter(pk=data["conversation"]).first()
            if conversation is None:
                raise NotFound("no such conversation")
        if data["stream"]:
            return answer_stream(
                lambda on_token, on_search: ask(
                    user=request.user,
                    question=question,
                    collections=collections,
                    conversation=conversation,
                    on_token=on_token,
                    on_search=on_search,
                    request=request,
                ),
                lambda asked_question: question_payload(request, asked_question),
            )
        asked_question = ask(
            user=request.user,
            question=question,
            collections=collections,
            conversation=conversation,
            request=request,
        )
        return Response(question_payload(request, asked_question))


CONVERSATION_FILTER = OpenApiParameter("conversation", int, description="Only this conversation's.")


@extend_schema(tags=["questions"])
class QuestionList(AnswerViewMixin, generics.ListAPIView):
    """The caller's own questions, newest first."""

    serializer_class = s.QuestionSerializer

    def get_queryset(self):
        questions = own_questions(self.request.user)
        if (conversation := self.request.query_params.get("conversation")) is not None:
            if not conversation.isdigit():
                raise ValidationError({"conversation": ["a conversation id is a number"]})
            questions = questions.filter(conversation=conversation)
        return questions

    @extend_schema(
        parameters=[CONVERSATION_FILTER], responses={200: s.QuestionSerializer(many=True), **errors(400)}
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["questions"], responses={200: s.QuestionSerializer, **errors(404)})
class QuestionDetail(AnswerViewMixin, generics.RetrieveAPIView):
    serializer_class = s.QuestionSerializer

    def get_queryset(self):
        return own_questions(self.request.user)


class QuestionFeedback(APIView):
    @extend_schema(
        tags=["questions"],
        request=s.FeedbackSerializer,
        responses={200: s.FeedbackSerializer, **body_errors(404)},
    )
    def post(self, request, pk):
        """Rate the answer to one of your questions (up or down), with an optional comment."""
        question = generics.get_object_or_404(own_questions(request.user), pk=pk)
        given = s.FeedbackSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        feedback = give_feedback(
            question=question,
            rating=given.validated_data["rating"],
            comment=given.validated_data.get("comment", ""),
        )
        return Response(s.FeedbackSerializer(feedback).data)


# --- conversations --------------------------------------------------------------------------


@extend_schema(tags=["conversations"])
class ConversationList(generics.ListCreateAPIView):
    serializer_class = s.ConversationSerializer

    def get_queryset(self):
        return own_conversations(self.request.user)

    @extend_schema(responses={200: s.ConversationSerializer(many=True), **errors()})
    def get(self, request, *args, **kwargs):
        """The caller's conversations, the one last asked in first."""
        return super().get(request, *args, **kwargs)

    @extend_schema(responses={201: s.ConversationSerializer, **body_errors()})
    def post(self, request, *args, **kwargs):
        """Start a conversation; ask in it with `conversation` set on POST /ask."""
        return super().post(request, *args, **kwargs)

    def perform_create(self, serializer):
        created = start_conversation(user=self.request.user, title=serializer.validated_data["title"])
        serializer.instance = own_conversations(self.request.user).get(pk=created.pk)


@extend_schema(tags=["conversations"])
class ConversationDetail(generics.RetrieveUpdateDestroyAPIView):
    """One of the caller's conversations (anyone else's is a 404); its questions are at
    GET /questions?conversation=ID."""

    permission_classes = [*generics.RetrieveUpdateDestroyAPIView.permission_classes, WritableToken]
    serializer_class = s.ConversationSerializer
    http_method_names = ["get", "patch", "delete", "options", "head"]

    def get_queryset(self):
        return own_conversations(self.request.user)

    @extend_schema(responses={200: s.ConversationSerializer, **errors(404)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(responses={200: s.ConversationSerializer, **body_errors(403, 404)})
    def patch(self, request, *args, **kwargs):
        """Rename the conversation."""
        return super().patch(request, *args, **kwargs)

    @extend_schema(responses={204: None, **errors(403, 404)})
    def delete(self, request, *args, **kwargs):
        """Delete the conversation and its questions."""
        return super().delete(request, *args, **kwargs)

    def perform_update(self, serializer):
        if "title" in serializer.validated_data:
            rename_conversation(serializer.instance, title=serializer.validated_data["title"])

    def perform_destroy(self, conversation):
        delete_conversation(conversation, actor=self.request.user, request=self.request)


# --- batches -------------------------------------------------------------------------------------


def _batches(request):
    items = AskBatchItem.objects.select_related("question__answer").order_by("ordinal")
    return AskBatch.objects.filter(user=request.user).prefetch_related(Prefetch("items", queryset=items))


class BatchCreate(APIView):
    @extend_schema(
        tags=["batches"],
        request=s.BatchSubmitSerializer,
        responses={
            202: OpenApiResponse(s.BatchSerializer, description="Queued: poll the batch"),
            **body_errors(429),
        },
    )
    def post(self, request):
        """Submit up to 100 questions at once; the worker answers them in order."""
        submitted = s.BatchSubmitSerializer(data=request.data)
        submitted.is_valid(raise_exception=True)
        data = submitted.validated_data
        consume("batch", request, cost=len(data["questions"]))
        batch = submit_batch(
            user=request.user,
            questions=data["questions"],
            collections=collection_names(request, data.get("collections")),
        )
        body = s.BatchSerializer(_batches(request).get(pk=batch.pk), context=answer_context(request)).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["batches"], responses={200: s.BatchSerializer, **errors(404)})
class BatchDetail(AnswerViewMixin, generics.RetrieveAPIView):
    """A batch's progress (answered of total) and the answers so far."""

    serializer_class = s.BatchSerializer

    def get_queryset(self):
        return _batches(self.request)
