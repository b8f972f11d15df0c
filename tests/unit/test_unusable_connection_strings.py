"""A connection string that parses but holds a value libpq refuses (a port of `notaport`) is a
configuration error (exit 78, which the unit does not restart), never "unreachable" (69,
restarted forever); the message names the key and the option, never the password."""
from __future__ import annotations

from pathlib import Path

import pytest

from mxarchiverd import cli
from mxarchiverd.config import ConfigError, load_config
from mxarchiverd.config.dsn import dsn_value_problems
from mxarchiverd.db import DatabaseMisconfigured, connect, connect_with_retry
from mxarchiverd.exitcodes import ExitCode

PASSWORD = "Hunter2-secret"


@pytest.mark.parametrize(("params", "names"), [
    ({"host": "h", "port": "notaport"}, "port"),
    ({"host": "a,b", "port": "5432,x"}, "port"),
    ({"port": "70000"}, "port"),
    ({"connect_timeout": "soon"}, "connect_timeout"),
    ({"sslmode": "always"}, "sslmode"),
    ({"target_session_attrs": "writable"}, "target_session_attrs"),
    ({"keepalives_idle": "-3"}, "keepalives_idle"),
])
def test_values_libpq_would_refuse_are_named(params: dict[str, str], names: str) -> None:
    problems = dsn_value_problems({**params, "password": PASSWORD})
    assert len(problems) == 1 and problems[0].startswith(names), problems
    assert PASSWORD not in problems[0]


@pytest.mark.parametrize("params", [
    {"host": "db", "port": "5432", "connect_timeout": "10", "sslmode": "verify-full"},
    {"host": "a,b", "port": "5432,6543", "target_session_attrs": "read-write"},
    {"host": "/run/postgresql", "port": ""},
    {},
])
def test_values_libpq_accepts_pass(params: dict[str, str]) -> None:
    assert dsn_value_problems(params) == []


def config_file(tmp_path: Path, archive_dsn: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"archive:\n  database_url: '{archive_dsn}'\n  storage_path: {tmp_path / 'media'}\n"
                    "daemon:\n  startup_timeout: 1s\n")
    return path


def test_a_port_that_is_not_a_number_is_reported_at_its_key(tmp_path: Path) -> None:
    path = config_file(tmp_path, f"postgresql://arch:{PASSWORD}@127.0.0.1:notaport/archive")
    with pytest.raises(ConfigError) as raised:
        load_config(str(path), {})
    assert [p for p, _ in raised.value.problems] == ["archive.database_url"]
    assert "port" in raised.value.render() and PASSWORD not in raised.value.render()


@pytest.mark.parametrize("command", ["run", "migrate", "status", "check-config"])
def test_every_command_exits_78_on_a_port_that_is_not_a_number(tmp_path: Path, command: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path, f"postgresql://arch:{PASSWORD}@127.0.0.1:notaport/archive")
    assert cli.main(["--config", str(path), command]) == ExitCode.CONFIG
    out = capsys.readouterr()
    assert "archive.database_url" in out.err and PASSWORD not in out.err + out.out


def test_libpq_refusing_a_value_at_connect_is_not_retried_as_an_outage() -> None:
    """The connect path says the same for values no table here knows (libpq's own check)."""
    slept: list[float] = []
    with pytest.raises(DatabaseMisconfigured) as raised:
        connect_with_retry(f"host=127.0.0.1 port=notaport dbname=x password={PASSWORD}", purpose="preflight",
                           deadline=float("inf"), sleep=slept.append)
    assert raised.value.exit_code == ExitCode.CONFIG and not slept
    assert "port" in str(raised.value) and PASSWORD not in str(raised.value)
    with pytest.raises(DatabaseMisconfigured):
        connect(f"host=127.0.0.1 dbname=x sslmode=always password={PASSWORD}", purpose="status")
