"""ASGI entry point for uvicorn: `uvicorn kb.asgi:application`."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kb.settings")

application = get_asgi_application()

from django.db import connections  # noqa: E402

from kb.warm_up import load_models  # noqa: E402 (needs the settings that get_asgi_application set up)

load_models()
connections.close_all()  # the start-up thread's: requests open their own
