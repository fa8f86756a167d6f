"""deploy/: the compose file and the Kubernetes manifests run the processes ./run runs, configured
only by settings the project reads, with every Celery queue consumed. The processes themselves
are exercised together in tests/test_scale_out.py."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from kb.stack.__main__ import ENGINE_OPTIONS
from kb.stack.layout import PROJECT_DIR

DEPLOY = PROJECT_DIR / "deploy"
# Our images; other containers (PostgreSQL, Redis, nginx) have settings of their own.
OUR_IMAGES = re.compile(r"^kb-(web|worker|engine)")
READ_SETTING = re.compile(r"""(?:environ\.get|environ\[|env_list|env_bool)\(?\s*["']([A-Z][A-Z0-9_]+)["']""")


def settings_read() -> set[str]:
    """Every environment variable the project's code reads (the engine's options through a table)."""
    names = set(ENGINE_OPTIONS)
    for package in ("kb", "retrieval", "inference"):
        for path in (PROJECT_DIR / package).rglob("*.py"):
            names.update(READ_SETTING.findall(path.read_text()))
    return names


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def our_services(document: dict) -> dict[str, dict]:
    return {
        name: service for name, service in document["services"].items() if OUR_IMAGES.match(service["image"])
    }


def manifests() -> list[dict]:
    return [
        document
        for path in sorted((DEPLOY / "k8s").rglob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document and "kind" in document and document["kind"] != "Kustomization"
    ]


def our_containers(documents: list[dict]) -> list[dict]:
    return [
        container
        for document in documents
        if document["kind"] in ("Deployment", "StatefulSet", "Job")
        for container in document["spec"]["template"]["spec"]["containers"]
        if OUR_IMAGES.match(container["image"])
    ]


def queues_of(environment: dict[str, str]) -> set[str]:
    default = {queue.name for queue in settings.CELERY_TASK_QUEUES}
    return set(environment["KB_WORKER_QUEUES"].split(",")) if "KB_WORKER_QUEUES" in environment else default


def test_compose_configures_our_containers_only_with_settings_the_project_reads():
    known, readme = settings_read(), (PROJECT_DIR / "README.md").read_text()
    for name, service in our_services(compose()).items():
        unknown = set(service.get("environment", {})) - known
        assert not unknown, f"{name} sets {unknown}, which nothing reads"
        undocumented = [
            variable for variable in service.get("environment", {}) if f"`{variable}`" not in readme
        ]
        assert not undocumented, f"{name} sets {undocumented}, which README.md does not describe"
        assert service.get("command", ["./run"])[0] == "./run"


def test_each_image_runs_its_process_with_run():
    commands = {}
    for stage in re.split(r"^FROM ", (DEPLOY / "Dockerfile").read_text(), flags=re.MULTILINE)[1:]:
        name = stage.split("\n", 1)[0].split(" AS ")[1]
        if command := re.search(r"^CMD (.*)$", stage, re.MULTILINE):
            commands[name] = command.group(1)
    assert commands == {name: f'["./run", "{name}"]' for name in ("web", "worker", "engine")}


def test_compose_consumes_every_queue_and_lists_each_engine():
    services = our_services(compose())
    workers = [service for service in services.values() if service["build"]["target"] == "worker"]
    consumed = set().union(*(queues_of(service["environment"]) for service in workers))
    assert consumed == {queue.name for queue in settings.CELERY_TASK_QUEUES}
    assert any(queues_of(service["environment"]) == {"embed"} for service in workers)
    engines = {name for name, service in services.items() if service["build"]["target"] == "engine"}
    urls = services["web"]["environment"]["ENGINE_URLS"].split(",")
    assert sorted(urls) == sorted(f"http://{name}:8100" for name in engines) and len(engines) >= 2


def test_kubernetes_manifests_configure_only_known_settings_and_consume_every_queue():
    documents = manifests()
    known = settings_read()
    config = next(d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kb-config")
    secrets = next(d for d in documents if d["kind"] == "Secret" and d["metadata"]["name"] == "kb-secrets")
    postgres_only = {"POSTGRES_PASSWORD"}
    assert set(config["data"]) | (set(secrets["stringData"]) - postgres_only) <= known
    containers = our_containers(documents)
    for container in containers:
        assert {variable["name"] for variable in container.get("env", [])} <= known, container["name"]
    workers = [c for c in containers if c["image"] == "kb-worker"]
    consumed = set().union(*(queues_of({v["name"]: v["value"] for v in c["env"]}) for c in workers))
    assert consumed == {queue.name for queue in settings.CELERY_TASK_QUEUES}
    engines = next(d for d in documents if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "engine")
    urls = config["data"]["ENGINE_URLS"].split(",")
    assert urls == [f"http://engine-{n}.engine:8100" for n in range(engines["spec"]["replicas"])]


def compose_command() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_compose_file_passes_compose_config(tmp_path: Path):
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    env_file = tmp_path / ".env"
    env_file.write_text((DEPLOY / "env.example").read_text())
    shutil.copy(DEPLOY / "compose.yaml", tmp_path / "compose.yaml")
    shutil.copy(DEPLOY / "nginx.conf", tmp_path / "nginx.conf")
    result = subprocess.run(
        [*command, "--project-directory", str(tmp_path), "-f", str(tmp_path / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert rendered["services"]["web"]["deploy"]["replicas"] == 2


def test_kustomize_builds_the_cpu_and_the_gpu_manifests():
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    for overlay in ("base", "gpu"):
        result = subprocess.run(
            ["kubectl", "kustomize", str(DEPLOY / "k8s" / overlay)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        engine = next(
            d
            for d in yaml.safe_load_all(result.stdout)
            if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "engine"
        )
        container = engine["spec"]["template"]["spec"]["containers"][0]
        gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        assert (container["image"], gpus) == (
            ("kb-engine:latest", None) if overlay == "base" else ("kb-engine-cuda:latest", 1)
        )
