"""HTTP views of the knowledge base: the staff Q&A pages and the health endpoint.

The Q&A page is a conversation: each question is answered in the context of the thread's earlier
ones. An answer streams in as server-sent events (kb.streaming) and then the stored answer is
swapped in, rendered by the same template that shows it when the thread is opened again. Every
object is looked up through the selectors that apply the reader's rights, so what a user may not
read (another user's thread included) is a 404.
"""

import sys

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from kb.api.errors import DATABASE_RETRY_SECONDS, DATABASE_UNAVAILABLE, database_unavailable
from kb.models import AnswerSentence, DocumentVersion
from kb.selectors import (
    correction_of,
    current_chunks,
    disclaimers,
    feedback_on,
    latest_turns,
    own_conversations,
    own_questions,
    passage_in_context,
    readable_collections,
    visible_citations,
)
from kb.services.answers import ask, normalise_question
from kb.services.conversations import (
    InvalidConversation,
    delete_conversation,
    rename_conversation,
    start_conversation,
    title_for,
)
from kb.services.feedback import InvalidFeedback, give_feedback
from kb.services.health import system_health
from kb.services.rate_limits import RateLimited, consume
from kb.services.search import search_scopes
from kb.streaming import answer_stream
from retrieval.search import InvalidQuery

HISTORY_LENGTH = 30
# Questions of a thread shown on its page: the end of a thread hundreds of questions long.
THREAD_TURNS = 20
# Characters of the document shown around a cited passage in the side panel.
PASSAGE_CONTEXT = 400


@never_cache
@require_GET
def healthz(request):
    """200 with a report when every part is up, 503 naming what is down. ?deep=1 adds a task round trip."""
    healthy, report = system_health(deep=request.GET.get("deep") == "1")
    return JsonResponse(report, status=200 if healthy else 503)


def server_error(request):
    """handler500: an error that escaped a view. While the database is unavailable that is a 503
    with Retry-After (JSON under /api/), rendered without touching the database; anything else is
    Django's 500 page."""
    if not isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE):
        return defaults.server_error(request)
    if request.path.startswith("/api/"):
        return database_unavailable()
    headers = {"Retry-After": str(DATABASE_RETRY_SECONDS)}
    return HttpResponse(render_to_string("503.html"), status=503, headers=headers)


@login_required
@require_GET
def ask_page(request, conversation_id: int | None = None):
    """The one page of the staff: a conversation (a new one at /), its answers with their sources,
    and the user's other conversations beside it."""
    conversation = None
    if conversation_id is not None:
        conversation = get_object_or_404(own_conversations(request.user), pk=conversation_id)
    turns = latest_turns(conversation, THREAD_TURNS) if conversation else []
    return _page(request, conversation, turns)


@login_required
@require_GET
def question_page(request, question_id: int):
    """One earlier question: its place in its conversation, or the question alone when it was
    asked outside one (through the API or the ask command)."""
    question = get_object_or_404(own_questions(request.user), pk=question_id)
    if question.conversation_id:
        return redirect(f"/conversations/{question.conversation_id}#question-{question.pk}")
    return _page(request, None, [question])


def _page(request, conversation, turns):
    context = {
        "collections": readable_collections(request.user).order_by("name"),
        "history": own_conversations(request.user)[:HISTORY_LENGTH],
        "conversation": conversation,
        "earlier_turns": conversation.turns - len(turns) if conversation else 0,
        "turns": [
            render_to_string("kb/_answer.html", answer_context(request.user, turn), request=request)
            for turn in turns
        ],
    }
    return render(request, "kb/ask.html", context)


@login_required
@require_POST
def rename(request, conversation_id: int):
    conversation = get_object_or_404(own_conversations(request.user), pk=conversation_id)
    try:
        rename_conversation(conversation, title=request.POST.get("title", ""))
    except InvalidConversation as error:
        return JsonResponse({"error": str(error)}, status=400)
    return redirect("conversation", conversation.pk)


@login_required
@require_POST
def delete(request, conversation_id: int):
    conversation = get_object_or_404(own_conversations(request.user), pk=conversation_id)
    delete_conversation(conversation, actor=request.user, request=request)
    return redirect("ask")


@login_required
@require_POST
def ask_stream(request):
    """Answer the posted question as server-sent events: `search` (a follow-up's rewrite), `token`s,
    then `answer` with its HTML. Without a `conversation` the question starts a new one."""
    chosen = request.POST.getlist("collections")
    readable = list(readable_collections(request.user).values_list("name", flat=True))
    # All boxes ticked means "everything I may read", including collections shared with me later.
    collections = None if set(chosen) >= set(readable) else chosen
    try:
        consume("ask", request)
    except RateLimited as error:
        message = _("Too many questions in a short time. Try again in %(seconds)d s.") % {
            "seconds": error.retry_after
        }
        return JsonResponse({"error": message}, status=429, headers={"Retry-After": str(error.retry_after)})
    try:
        question = normalise_question(request.POST.get("question", ""))
        if collections == []:
            raise InvalidQuery(_("Choose at least one collection."))
        search_scopes(request.user, collections)
    except InvalidQuery as error:
        return JsonResponse({"error": str(error)}, status=400)
    user = request.user
    if conversation_id := request.POST.get("conversation"):
        conversation = (
            own_conversations(user).filter(pk=conversation_id).first() if conversation_id.isdigit() else None
        )
        if conversation is None:
            return JsonResponse({"error": _("This conversation does not exist.")}, status=404)
    else:
        conversation = start_conversation(user=user, title=title_for(question))
    language = translation.get_language()

    def payload(asked) -> dict:
        thread = own_conversations(user).get(pk=conversation.pk)
        with translation.override(language):  # the answer is rendered in the answering thread
            html = render_to_string("kb/_answer.html", answer_context(user, asked), request=request)
            entry = render_to_string("kb/_history_entry.html", {"entry": thread, "current": True})
        return {"id": asked.pk, "conversation": conversation.pk, "html": html, "history_entry": entry}

    return answer_stream(
        lambda on_token, on_search: ask(
            user=user,
            question=question,
            collections=collections,
            conversation=conversation,
            on_token=on_token,
            on_search=on_search,
            request=request,
        ),
        payload,
    )


def answer_context(user, question) -> dict:
    """What _answer.html shows: the shown sentences with the markers of citations the user may
    (still) read, the citations as a numbered source list, and the closest passages of a refusal."""
    answer = question.answer
    citations = list(
        visible_citations(user)
        .filter(answer=answer)
        .select_related("collection", "version")
        .order_by("number")
    )
    readable = {citation.pk: citation for citation in citations}
    sentences = [
        (sentence, [readable[c.pk] for c in sentence.citations.all() if c.pk in readable])
        for sentence in answer.sentences.filter(shown=True).prefetch_related("citations")
    ]
    closest_ids = [source["chunk"] for source in answer.detail.get("closest_sources", [])]
    closest = (
        current_chunks()
        .filter(pk__in=closest_ids, version__document__collection__in=readable_collections(user))
        .select_related("version__document")
    )
    return {
        "flagged": any(sentence.verdict != AnswerSentence.Verdict.SUPPORTED for sentence, _ in sentences),
        "review": correction_of(answer),
        "question": question,
        "answer": answer,
        "sentences": sentences,
        "citations": citations,
        "disclaimers": disclaimers(citations),
        "closest": closest,
        "feedback": feedback_on(question),
    }


@login_required
@require_GET
def citation_panel(request, citation_id: int):
    """The side panel of one citation: its document, page and the passage highlighted in context."""
    citation = get_object_or_404(
        visible_citations(request.user).select_related("collection", "version", "document"), pk=citation_id
    )
    before, passage, after = passage_in_context(citation, PASSAGE_CONTEXT)
    context = {"citation": citation, "before": before, "passage": passage, "after": after}
    return render(request, "kb/_citation.html", context)


@login_required
@require_GET
def original_file(request, version_id: int):
    """The uploaded file of a document version the user may read, as uploaded."""
    version = get_object_or_404(
        DocumentVersion.objects.filter(document__collection__in=readable_collections(request.user)),
        pk=version_id,
    )
    try:
        file = version.file.open("rb")
    except FileNotFoundError:
        raise Http404 from None
    return FileResponse(file, as_attachment=False, filename=version.original_name)


@login_required
@require_POST
def feedback(request, question_id: int):
    question = get_object_or_404(own_questions(request.user), pk=question_id)
    try:
        given = give_feedback(
            question=question, rating=request.POST.get("rating", ""), comment=request.POST.get("comment", "")
        )
    except InvalidFeedback as error:
        return JsonResponse({"error": str(error)}, status=400)
    return render(request, "kb/_feedback.html", {"question": question, "feedback": given})
