"""Writing the audit trail. Every state change that matters goes through record()."""

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
