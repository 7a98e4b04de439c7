"""docker-compose.yml cannot run here (no Docker engine): check what it would run exists."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from orstream import settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROJECT_SERVICES = ["web", "worker", "archive-worker", "beat", "edge"]


def test_the_production_stack_has_every_service_with_a_health_check():
    services = COMPOSE["services"]
    assert set(services) >= {"postgres", "redis", "web", "worker", "beat", "edge", "coturn"}
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
    assert {"postgres-data", "redis-data", "media"} <= set(COMPOSE["volumes"])


def module_of(command: list[str]) -> str:
    if command[0] == "daphne":
        return command[-1].split(":")[0]
    if command[0] == "celery":
        return command[command.index("-A") + 1]
    if command[:2] == ["python", "-m"]:
        return command[2]
    raise AssertionError(f"unexpected command {command}")


def test_each_project_command_names_a_module_that_exists():
    for name in PROJECT_SERVICES:
        module = module_of(COMPOSE["services"][name]["command"])
        assert importlib.util.find_spec(module) is not None, f"{name} runs {module}, which does not exist"


def test_the_celery_app_module_exposes_app():
    from orstream.celery import app

    assert app.main == "orstream"


def test_every_required_production_variable_is_set_for_the_site():
    for name in ["web", "worker", "beat"]:
        environment = COMPOSE["services"][name]["environment"]
        assert environment["ORSTREAM_PROFILE"] == "production"
        missing = [v for v in settings.PRODUCTION_REQUIRED if not environment.get(v)]
        assert not missing, f"{name} lacks {missing}"


def test_the_edge_gets_its_secret_and_webhook():
    environment = COMPOSE["services"]["edge"]["environment"]
    assert environment["ORSTREAM_EDGE_SECRET"] and environment["ORSTREAM_EDGE_WEBHOOK_URL"].endswith("/edge/events/")


def test_the_edge_writes_segments_where_the_site_and_workers_read_them():
    services = COMPOSE["services"]
    spool = services["edge"]["environment"]["ORSTREAM_RECORDINGS_SPOOL_DIR"]
    for name in ["web", "worker"]:
        assert services[name]["environment"]["ORSTREAM_RECORDINGS_SPOOL_DIR"] == spool, name
        assert services[name]["volumes"][0].split(":")[0] == services["edge"]["volumes"][0].split(":")[0]


def test_a_crashed_edge_or_site_is_restarted_by_docker():
    # The edge announces itself when it starts again and the site puts its live sessions back.
    for name in PROJECT_SERVICES:
        assert COMPOSE["services"][name].get("restart") in {"always", "unless-stopped"}, f"{name} is not restarted"


def test_archive_encodes_have_their_own_queue_and_workers():
    from orstream.celery import app

    def queue_of(task: str) -> str:
        return str(app.amqp.router.route({}, task)["queue"].name)

    assert queue_of("recordings.tasks.archive_chunk_encode") == "archive"
    assert queue_of("recordings.tasks.archive_join") == "archive"
    # An export or a withdrawal's effects never wait behind an encode.
    assert queue_of("recordings.tasks.recording_export") == "celery"
    assert queue_of("consent.tasks.consent_effect_deliver") == "celery"
    archive = COMPOSE["services"]["archive-worker"]["command"]
    assert archive[archive.index("-Q") + 1] == "archive"
    assert "-Q" not in COMPOSE["services"]["worker"]["command"]
