"""Writing the audit trail (every state change that matters goes through record()) and reading it out."""

import csv
import io
import json
from collections.abc import Iterable, Iterator

from django.db import models

from kb.models import AuditEvent


def client_ip(request) -> str | None:
    """The address the request came from (REMOTE_ADDR; a proxy's header is trusted only via uvicorn)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def record(
    *,
    action: str,
    actor=None,
    target: models.Model | None = None,
    request=None,
    actor_name: str = "",
    **detail,
) -> AuditEvent:
    """Append one event. `actor` is a user (or None for the system); `target` the object acted on."""
    if actor is not None and not actor.is_authenticated:
        actor = None
    return AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor is not None else actor_name,
        action=action,
        object_type=target._meta.label if target is not None else "",
        object_id=str(target.pk) if target is not None else "",
        object_repr=str(target)[:500] if target is not None else "",
        ip_address=client_ip(request),
        detail=detail,
    )


CSV_COLUMNS = ["time", "actor", "action", "object_type", "object_id", "object", "ip_address", "detail"]
# A cell starting with one of these is a formula to a spreadsheet: a document title could be one.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def audit_csv_rows(events: Iterable[AuditEvent]) -> Iterator[str]:
    """CSV lines (header first) of the events, for export; detail as JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_cell(value) for value in values])
        return buffer.getvalue()

    yield line(CSV_COLUMNS)
    for event in events:
        yield line(
            [
                event.created_at.isoformat(),
                event.actor_name,
                event.action,
                event.object_type,
                event.object_id,
                event.object_repr,
                event.ip_address or "",
                json.dumps(event.detail, ensure_ascii=False, sort_keys=True),
            ]
        )
