"""Pages of the curation console beyond the Django admin's model pages: the dashboard and the
review queue."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse

from kb.charts import bar_chart, line_chart
from kb.models import Feedback
from kb.selectors import can_curate
from kb.services.dashboard import dashboard
from kb.services.documents import set_hidden
from kb.services.reviews import InvalidReview, review_answer, review_queue, reviewable_answers
from retrieval import reembedding

DASHBOARD_DAYS = (7, 30, 90)


def dashboard_view(request):
    """Usage, quality and ingestion over the last days, for administrators (it counts every collection)."""
    if not request.user.is_superuser:
        raise PermissionDenied
    days = next((choice for choice in DASHBOARD_DAYS if request.GET.get("days") == str(choice)), 30)
    data = dashboard(days=days)
    charts = [
        ("Questions per day", bar_chart("Questions per day", data.days, data.questions)),
        ("Answer latency (s)", line_chart("Answer latency", data.days, data.latency, unit="s")),
        ("Time to first token (s)", line_chart("Time to first token", data.days, data.first_token, unit="s")),
        (
            "Cache hits and refusals (%)",
            line_chart("Cache hits and refusals", data.days, data.rates, unit="%"),
        ),
        ("Feedback", bar_chart("Feedback", data.days, data.feedback)),
        (
            "Engine decoding speed (tokens/s)",
            line_chart("Engine tokens per second", data.days, data.tokens_per_second),
        ),
        ("Documents ingested and failed", bar_chart("Documents ingested", data.days, data.ingestion)),
        ("Chunks indexed", bar_chart("Chunks indexed", data.days, data.chunks)),
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "charts": charts,
        "totals": data.totals,
        "days": days,
        "choices": DASHBOARD_DAYS,
        "embedding": reembedding.state(),
        "embedding_progress": reembedding.progress(),
    }
    return TemplateResponse(request, "admin/kb/dashboard.html", context)


def review_queue_view(request):
    """Answers waiting for a person: unsupported sentences or negative feedback."""
    queue = review_queue(request.user).prefetch_related("questions")
    reason = request.GET.get("reason")
    if reason == "unsupported":
        queue = queue.filter(unsupported=True)
    elif reason == "feedback":
        queue = queue.filter(negative=True)
    page = Paginator(queue, 50).get_page(request.GET.get("page"))
    context = {**admin.site.each_context(request), "title": "Review queue", "page": page, "reason": reason}
    return TemplateResponse(request, "admin/kb/review_queue.html", context)


def review_view(request, answer_id: int):
    """One answer with its sentences, verdicts, sources and feedback, and what the reviewer decides:
    correct as it is, the right answer written out, or a cited document hidden from every search."""
    answer = get_object_or_404(reviewable_answers(request.user), pk=answer_id)
    citations = answer.citations.select_related("document", "collection")
    documents = {c.document for c in citations if c.document and can_curate(request.user, c.collection)}
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "hide":
                document = next(d for d in documents if str(d.pk) == request.POST.get("document"))
                set_hidden(
                    document, True, user=request.user, request=request, reason=f"review of answer {answer.pk}"
                )
                messages.success(request, f"“{document}” is hidden from every search and answer.")
            else:
                review_answer(
                    answer,
                    verdict=action,
                    corrected_text=request.POST.get("corrected_text", ""),
                    reviewer=request.user,
                    request=request,
                )
                messages.success(request, "Review saved.")
                return redirect("review-queue")
        except StopIteration:
            messages.error(request, "Choose a cited document you curate.")
        except InvalidReview as error:
            messages.error(request, str(error))
        return redirect("review", answer_id=answer.pk)
    context = {
        **admin.site.each_context(request),
        "title": "Review an answer",
        "answer": answer,
        "questions": answer.questions.all(),
        "sentences": answer.sentences.prefetch_related("citations"),
        "citations": citations,
        "feedback": Feedback.objects.filter(question__answer=answer),
        "documents": sorted(documents, key=str),
    }
    return TemplateResponse(request, "admin/kb/review.html", context)
