"""The local stack behind ./run: PostgreSQL, Redis, the Celery worker, the engine and the web server.

This package owns the lifecycle of the processes it starts (start, supervise, stop) and
never imports Django, so it can run before the database exists.
"""
