"""Celery tasks. Each one is a thin wrapper around a service function."""

import socket

from celery import shared_task
from django.db import connection


@shared_task
def database_status() -> dict:
    """Report which worker ran this and what database it reaches (the deep health check)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database(), current_setting('server_version')")
        database, server = cursor.fetchone()
    return {"worker_host": socket.gethostname(), "database": database, "server": server}
