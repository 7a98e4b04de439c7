"""The two profiles: production refuses to start without its variables and passes check --deploy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "ORSTREAM_PROFILE": "production",
    "SECRET_KEY": "k" * 64 + "-a-long-random-production-secret-value",
    "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/orstream"),
    "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
    "ALLOWED_HOSTS": "orstream.hospital.example",
    "ORSTREAM_PUBLIC_URL": "https://orstream.hospital.example",
    "ORSTREAM_EDGE_URL": "http://edge.hospital.example:8010",
    "ORSTREAM_EDGE_SECRET": "e" * 48,
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ORSTREAM_", "DJANGO_")) and k not in PRODUCTION}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_production_passes_check_deploy_with_its_variables_set():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ORSTREAM_EDGE_SECRET", "ALLOWED_HOSTS"])
def test_production_stops_naming_the_missing_variable(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert f"{missing} must be set when ORSTREAM_PROFILE=production" in result.stderr


def test_secrets_can_come_from_files(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("f" * 64 + "-from-a-docker-secret-file\n")
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"} | {"SECRET_KEY_FILE": str(secret)}
    result = manage("shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)", env=env)
    assert result.stdout.strip().splitlines()[-1] == "f" * 64 + "-from-a-docker-secret-file"


def test_the_embedded_default_needs_nothing_set(tmp_path):
    result = manage(
        "shell", "-c",
        "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND'], s.CELERY_TASK_ALWAYS_EAGER)",
        env={"ORSTREAM_VAR_DIR": str(tmp_path)},
    )
    assert result.stdout.strip().splitlines()[-1].split() == ["django.db.backends.sqlite3", "orstream.layers.InMemoryChannelLayer", "True"], result.stderr


def test_an_s3_bucket_moves_recordings_to_object_storage(tmp_path):
    result = manage(
        "shell", "-c",
        "from django.conf import settings as s; d = s.STORAGES['default']; print(d['BACKEND'], d['OPTIONS']['bucket_name'], d['OPTIONS']['default_acl'])",
        env={"ORSTREAM_VAR_DIR": str(tmp_path), "ORSTREAM_S3_BUCKET": "or-recordings", "ORSTREAM_S3_ENDPOINT_URL": "https://minio.hospital.example"},
    )
    assert result.stdout.strip().splitlines()[-1].split() == ["storages.backends.s3.S3Storage", "or-recordings", "private"], result.stderr


@pytest.mark.parametrize("variables", [{}, {"ORSTREAM_VAR_DIR": "/srv/orstream-var"}, {"ORSTREAM_RECORDINGS_SPOOL_DIR": "/mnt/spool"}])
def test_the_edge_and_the_site_agree_on_the_recordings_spool(variables, monkeypatch):
    for name in ("ORSTREAM_VAR_DIR", "ORSTREAM_RECORDINGS_SPOOL_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ORSTREAM_EDGE_SECRET", "s")
    from orstream.edge.config import EdgeConfig

    site = manage("shell", "--no-imports", "-c", "from django.conf import settings; print(settings.RECORDINGS_SPOOL_DIR)", env=variables)
    assert site.returncode == 0, site.stderr
    assert Path(site.stdout.strip()) == EdgeConfig.from_env().media_dir
