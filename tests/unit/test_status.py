"""The STATUS= line: what it says, how long it gets, and that no secret gets in."""
from __future__ import annotations

from mxarchiverd.config import ArchiveConfig, Config, ConfigError, Secret, SourceConfig
from mxarchiverd.config.model import MatrixConfig
from mxarchiverd.supervisor.status import (
    MAX_LENGTH, StatusView, Totals, aggregate, describe_config_error, redact, render_status, secret_values,
)

RUNNING = {"poller": "running", "enricher": "running", "dbwriter": "running", "uploader": "running"}


def test_aggregate_adds_counts_and_takes_the_worst_lag() -> None:
    totals = aggregate({
        "poller": {"lag": 0.5, "errors": 1},
        "dbwriter": {"archived": 1000, "lag": 2.5, "errors": 2},
        "uploader": {"media_backlog": 7},
        "enricher": {},
    })
    assert totals == Totals(archived=1000, lag=2.5, media_backlog=7, errors=3)
    assert aggregate({}) == Totals()


def test_running() -> None:
    text = render_status(StatusView("running", RUNNING, Totals(1234, 17, 3, 0)))
    assert text == "running; archived 1234 events, lag 17 positions, media backlog 3, errors 0"


def test_lag_is_shown_in_stream_positions_not_seconds() -> None:
    """The poller's lag is how many stream positions it is behind Synapse's bound."""
    assert "lag 323 positions" in render_status(StatusView("running", RUNNING, Totals(lag=323)))


def test_degraded_names_the_children_that_are_not_running() -> None:
    states = RUNNING | {"enricher": "backoff", "uploader": "starting"}
    view = StatusView("running", states, Totals(), problem="enricher was killed by SIGKILL")
    text = render_status(view)
    assert text.startswith("degraded (enricher backoff, uploader starting); archived 0 events")
    assert text.endswith("last problem: enricher was killed by SIGKILL")


def test_starting_and_stopping_phases() -> None:
    assert render_status(StatusView("starting", RUNNING, Totals())).startswith("starting; ")
    assert render_status(StatusView("stopping", RUNNING, Totals())).startswith("stopping; ")


def test_reload_error_is_shown_and_long_text_is_cut() -> None:
    view = StatusView("running", RUNNING, Totals(), reload_error="processing.batch_size: " + "x" * 500)
    text = render_status(view)
    assert "reload failed, old config kept: processing.batch_size: xxx" in text
    assert len(text) == MAX_LENGTH and text.endswith("...")


def test_describe_config_error_names_the_first_key_path() -> None:
    error = ConfigError([("processing.batch_size", "expected a number of at least 1, got 0"),
                         ("rooms[2].room_id", "expected a room id")], "/etc/mxarchiver/config.yaml")
    assert describe_config_error(error, []) == (
        "processing.batch_size: expected a number of at least 1, got 0 (+1 more, see the log)")


def test_describe_config_error_redacts() -> None:
    error = ConfigError([("source.synapse_db_url", "cannot use postgresql://arch:s3cret-pw@db/x")], "f")
    assert "s3cret" not in describe_config_error(error, [])


def test_redact_known_secrets_url_passwords_and_dsn_passwords() -> None:
    assert redact("token abcdef1234 leaked", ["abcdef1234"]) == "token *** leaked"
    assert redact("postgres://me:hunter2@db:5432/x", []) == "postgres://me:***@db:5432/x"
    assert redact("host=db password='a b' user=me", []) == "host=db password=*** user=me"
    assert redact("matrix.password: expected a string", []) == "matrix.password: expected a string"
    assert redact("short ab", ["ab"]) == "short ab"  # tiny values would mangle ordinary words


def test_secret_values_walks_the_whole_config() -> None:
    config = Config(
        matrix=MatrixConfig(access_token=Secret("syt_token")),
        source=SourceConfig(synapse_db_url=Secret("postgresql://u:a@h/d")),
        archive=ArchiveConfig(database_url=Secret("postgresql://u:b@h/d")),
    )
    assert sorted(secret_values(config)) == ["postgresql://u:a@h/d", "postgresql://u:b@h/d", "syt_token"]


def test_dead_media_jobs_are_counted_and_shown() -> None:
    """Dead-lettered media must be loud: systemctl status shows how many died."""
    totals = aggregate({"uploader": {"media_backlog": 20, "media_dead": 257}, "poller": {"lag": 3}})
    assert totals.media_dead == 257
    text = render_status(StatusView("running", RUNNING, totals))
    assert "media backlog 20, 257 media jobs dead (see mxarchiverd status)" in text
    assert "dead" not in render_status(StatusView("running", RUNNING, Totals(media_backlog=20)))


def test_the_dead_count_travels_through_the_heartbeat_slot() -> None:
    import multiprocessing

    from mxarchiverd.pipeline.heartbeat import HeartbeatBoard

    board = HeartbeatBoard(multiprocessing.get_context("spawn"), ("uploader",))
    board.slot("uploader").write_stats({"media_backlog": 4.0, "media_dead": 9.0})
    assert aggregate(board.stats()).media_dead == 9
