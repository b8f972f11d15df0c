"""Each daemon run gets its own metrics directory, or none when metrics are off."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from mxarchiverd.config.model import Config, MetricsConfig
from mxarchiverd.metrics import directory, instruments


def with_metrics(listen: str | None) -> Config:
    return dataclasses.replace(Config(), metrics=MetricsConfig(listen=listen))


def test_off_means_no_directory_and_no_variable() -> None:
    environ = {instruments.DIRECTORY_VARIABLE: "/stale/from/a/parent"}
    assert directory.prepare(with_metrics(None), environ) is None
    assert instruments.DIRECTORY_VARIABLE not in environ


def test_on_makes_a_fresh_private_directory_in_the_runtime_directory(tmp_path: Path) -> None:
    environ = {"RUNTIME_DIRECTORY": str(tmp_path)}
    made = directory.prepare(with_metrics("127.0.0.1:9464"), environ)
    assert made is not None and made.parent == tmp_path and made.is_dir()
    assert made.stat().st_mode & 0o777 == 0o700
    assert environ[instruments.DIRECTORY_VARIABLE] == str(made)
    other = directory.prepare(with_metrics("127.0.0.1:9464"), dict(environ))
    assert other != made  # a second run never sums the first run's files
    directory.remove(made, environ)
    assert not made.exists() and instruments.DIRECTORY_VARIABLE not in environ
    directory.remove(other, {})
    assert not other.exists()


def test_instruments_do_nothing_when_off() -> None:
    import os

    assert instruments.DIRECTORY_VARIABLE not in os.environ
    instruments.batch_stored(["m.room.message"], 1, 0.01, 1)
    instruments.media_failed("dead")
    assert instruments._made == {}
