"""Celery tasks executed by a real worker process over the real Redis broker."""

import pytest

from kb.tasks import database_status


@pytest.mark.django_db(transaction=True)
def test_task_runs_on_a_real_worker_against_the_test_database(celery_worker, settings):
    result = database_status.delay().get(timeout=60)
    assert result["database"] == settings.DATABASES["default"]["NAME"]
    assert result["server"].startswith("18")
