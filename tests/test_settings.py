"""Settings come from the environment; production settings pass Django's deployment checks."""

import os
import stat
import subprocess
import sys

from kb.stack.layout import PROJECT_DIR


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "KB_HTTPS"}}
    environment.update(env, DJANGO_SETTINGS_MODULE="kb.settings")
    return subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
    )


def test_secret_key_is_generated_once_and_kept_private(tmp_path):
    code = "from django.conf import settings; print(settings.SECRET_KEY, settings.DEBUG)"
    first = run_python(code, KB_VAR_DIR=str(tmp_path))
    second = run_python(code, KB_VAR_DIR=str(tmp_path))
    assert first.returncode == 0, first.stderr
    key, debug = first.stdout.split()
    assert len(key) >= 50 and debug == "False"
    assert second.stdout == first.stdout
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


def deploy_check(var_dir, **env: str) -> subprocess.CompletedProcess:
    """`manage.py check --deploy` with production settings (plus `env`), warnings counting as errors."""
    return run_python(
        "from django.core.management import execute_from_command_line;"
        " execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        KB_VAR_DIR=str(var_dir),
        KB_HTTPS="1",
        SECRET_KEY="k" * 20 + "Production-Secret-Key-From-The-Environment-1234567890",
        **env,
    )


def test_deploy_checks_pass_with_production_settings(tmp_path):
    result = deploy_check(tmp_path, ALLOWED_HOSTS="kb.example.com")
    assert result.returncode == 0, result.stderr + result.stdout


def test_deploy_checks_catch_debug_in_production(tmp_path):
    result = deploy_check(tmp_path, DEBUG="1")
    assert result.returncode != 0
    assert "DEBUG" in result.stderr + result.stdout


def test_excerpt_sizes_are_read_by_rank_and_a_bad_list_is_named(tmp_path):
    code = "from django.conf import settings; print(settings.KB_ANSWER_SOURCE_CHARS)"
    sizes = run_python(code, KB_VAR_DIR=str(tmp_path), KB_ANSWER_SOURCE_CHARS="900, 500")
    assert sizes.returncode == 0, sizes.stderr
    assert sizes.stdout.strip() == "[900, 500]"
    bad = run_python(code, KB_VAR_DIR=str(tmp_path), KB_ANSWER_SOURCE_CHARS="900,lots")
    assert bad.returncode != 0
    assert "KB_ANSWER_SOURCE_CHARS must be positive sizes in characters" in bad.stderr
