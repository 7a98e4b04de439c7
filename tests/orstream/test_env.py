"""One set of environment helpers for the site and the edge: typos are errors that name the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orstream.edge.config import ConfigError, EdgeConfig
from orstream.env import EnvError, env_bool, env_int, env_secret

from .test_settings import manage


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("Yes", True), (" on ", True), ("0", False), ("OFF", False), ("", True)])
def test_a_boolean_reads_the_usual_words(monkeypatch: pytest.MonkeyPatch, raw: str, value: bool) -> None:
    monkeypatch.setenv("ORSTREAM_X", raw)
    assert env_bool("ORSTREAM_X", True) is value


@pytest.mark.parametrize("typo", ["ture", "flase", "2", "enabled"])
def test_a_boolean_typo_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, typo: str) -> None:
    monkeypatch.setenv("ORSTREAM_X", typo)
    with pytest.raises(EnvError, match=f"ORSTREAM_X must be one of .* not '{typo}'"):
        env_bool("ORSTREAM_X", False)


def test_a_number_typo_and_a_doubled_secret_are_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORSTREAM_N", "12k")
    with pytest.raises(EnvError, match="ORSTREAM_N must be a whole number, not '12k'"):
        env_int("ORSTREAM_N", 1)
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("ORSTREAM_S_FILE", str(secret))
    assert env_secret("ORSTREAM_S") == "from-a-file"
    monkeypatch.setenv("ORSTREAM_S", "inline")
    with pytest.raises(EnvError, match="set ORSTREAM_S or ORSTREAM_S_FILE, not both"):
        env_secret("ORSTREAM_S")


def test_the_edge_refuses_a_typo_it_used_to_read_as_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORSTREAM_EDGE_SECRET", "s" * 32)
    monkeypatch.setenv("ORSTREAM_EDGE_ICE_LOOPBACK", "yess")
    with pytest.raises(ConfigError, match="ORSTREAM_EDGE_ICE_LOOPBACK"):
        EdgeConfig.from_env()
    result = subprocess.run(
        [sys.executable, "-m", "orstream.edge", "--port", "0"],
        env={"ORSTREAM_EDGE_SECRET": "s" * 32, "ORSTREAM_EDGE_ICE_LOOPBACK": "yess", "PATH": "/usr/bin:/bin",
             "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "ORSTREAM_EDGE_ICE_LOOPBACK must be one of" in result.stderr


def test_the_site_stops_on_a_boolean_typo_naming_it() -> None:
    result = manage("check", env={"DEBUG": "ture"})
    assert result.returncode != 0 and "DEBUG must be one of" in result.stderr
