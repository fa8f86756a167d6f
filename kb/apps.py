from django.apps import AppConfig


class KbConfig(AppConfig):
    name = "kb"
    verbose_name = "Knowledge base"

    def ready(self):
        from django.conf import settings

        from . import signals  # noqa: F401 - connects the audit receivers
        from .services.rate_limits import parse_limits

        parse_limits(settings.KB_RATE_LIMITS)  # a mistyped limit stops the start, not a request
