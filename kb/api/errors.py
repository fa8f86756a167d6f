"""Every API error is JSON: {"error": {"code": "...", "message": "...", "fields": {...}}}.

Codes are stable; clients branch on them, people read the message.
"""

import logging

from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from kb.services.conversations import InvalidConversation
from kb.services.feedback import InvalidFeedback
from kb.services.ingestion import UploadRejected
from kb.services.rate_limits import RateLimited
from kb.services.search import UnknownCollection
from retrieval.search import InvalidQuery, SearchTooCostly

logger = logging.getLogger(__name__)

# While PostgreSQL is down or restarting, clients are told to come back rather than that the
# server failed (kb.views.server_error says the same outside REST framework's views).
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
DATABASE_RETRY_SECONDS = 15
DATABASE_UNAVAILABLE_MESSAGE = "the database is unavailable; try again shortly"

CODES = {
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "invalid_token",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ValidationError: "invalid_request",
}
# Errors of the services, with the status and code the API answers them with.
SERVICE_ERRORS = [
    (UnknownCollection, status.HTTP_400_BAD_REQUEST, "unknown_collection"),
    (SearchTooCostly, status.HTTP_400_BAD_REQUEST, "search_too_costly"),
    (InvalidQuery, status.HTTP_400_BAD_REQUEST, "invalid_query"),
    (UploadRejected, status.HTTP_400_BAD_REQUEST, "upload_rejected"),
    (InvalidFeedback, status.HTTP_400_BAD_REQUEST, "invalid_feedback"),
    (InvalidConversation, status.HTTP_400_BAD_REQUEST, "invalid_conversation"),
]


def service_error(exc: Exception) -> tuple[int, str] | None:
    """The status and code a service error is answered with (None for any other exception);
    streamed answers report their errors with the same codes."""
    for kind, status_code, code in SERVICE_ERRORS:
        if isinstance(exc, kind):
            return status_code, code
    return None


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    error = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def handle_exception(exc, context):
    """REST framework's exception handler, set in settings.REST_FRAMEWORK."""
    if isinstance(exc, RateLimited):
        return Response(
            error_body("rate_limited", str(exc)),
            status=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(exc.retry_after)},
        )
    known = service_error(exc)
    if known:
        status_code, code = known
        return Response(error_body(code, str(exc)), status=status_code)
    if isinstance(exc, DATABASE_UNAVAILABLE):
        logger.warning("API request failed: the database is unavailable (%s)", exc)
        return database_unavailable()
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        code = next((code for kind, code in CODES.items() if isinstance(exc, kind)), "error")
        if isinstance(exc, exceptions.ValidationError):
            return Response(
                error_body(code, "the request is not valid", _fields(exc.detail)),
                status=exc.status_code,
                headers=headers,
            )
        return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
    logger.exception("API request failed", exc_info=exc)
    return Response(
        error_body("internal_error", "the server could not complete the request; it has been logged"),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def database_unavailable() -> JsonResponse:
    """The 503 an API client gets while PostgreSQL is down, whichever layer met the error."""
    return JsonResponse(
        error_body("database_unavailable", DATABASE_UNAVAILABLE_MESSAGE),
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(DATABASE_RETRY_SECONDS)},
    )


def _fields(detail) -> dict:
    """Validation messages per field, as lists of strings."""
    if isinstance(detail, dict):
        return {name: _messages(value) for name, value in detail.items()}
    return {"non_field_errors": _messages(detail)}


def _messages(value) -> list[str]:
    if isinstance(value, dict):
        return [f"{key}: {message}" for key, inner in value.items() for message in _messages(inner)]
    if isinstance(value, list):
        return [message for item in value for message in _messages(item)]
    return [str(value)]


def not_found(request, *args, **kwargs):
    """Any other URL under /api/ answers a JSON 404 rather than the HTML page."""
    return JsonResponse(error_body("not_found", "no such endpoint"), status=404)
