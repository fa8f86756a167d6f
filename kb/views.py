"""HTTP views of the knowledge base."""

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from kb.services.health import system_health


@never_cache
@require_GET
def healthz(request):
    """200 with a report when every part is up, 503 naming what is down. ?deep=1 adds a task round trip."""
    healthy, report = system_health(deep=request.GET.get("deep") == "1")
    return JsonResponse(report, status=200 if healthy else 503)
