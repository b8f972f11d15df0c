"""The supervisor's decisions, driven by events and a fake clock; no processes."""
from __future__ import annotations

import pytest

from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.pipeline.heartbeat import Pulse
from mxarchiverd.supervisor.children import ChildState, Policy
from mxarchiverd.supervisor.fleet import Fleet, Order, Verb

S = ChildState
ROLES = ("poller", "enricher", "dbwriter", "uploader")
PIPELINE = ("poller", "enricher", "dbwriter")
POLICY = Policy(heartbeat_timeout=10, startup_timeout=30, stop_timeout=60, kill_grace=5,
                backoff_initial=1, backoff_max=8, restart_limit=3, restart_window=100)


def o(verb: Verb, role: str = "") -> Order:
    return Order(verb, role)


def spawns(orders: list[Order]) -> list[str]:
    return [order.role for order in orders if order.verb is Verb.SPAWN]


def fresh(now: float) -> dict[str, Pulse]:
    return {role: Pulse(now) for role in ROLES}


@pytest.fixture
def fleet() -> Fleet:
    """Every child booted and running at t=0..1, jitter pinned to 0 (half steps)."""
    fleet = Fleet(ROLES, PIPELINE, POLICY, jitter=lambda: 0.0)
    fleet.begin(0)
    for role in ROLES:
        fleet.ready(role, 1)
    return fleet


def state(fleet: Fleet, role: str) -> ChildState:
    return fleet.children[role].state


class TestStart:
    def test_begin_rebuilds_queues_before_spawning_the_pipeline(self) -> None:
        fleet = Fleet(ROLES, PIPELINE, POLICY, jitter=lambda: 0.0)
        orders = fleet.begin(0)
        assert orders == [o(Verb.SPAWN, "uploader"), o(Verb.REBUILD),
                          o(Verb.SPAWN, "poller"), o(Verb.SPAWN, "enricher"), o(Verb.SPAWN, "dbwriter")]
        assert set(fleet.starting()) == set(ROLES)

    def test_ready_once_every_child_reported(self) -> None:
        fleet = Fleet(ROLES, PIPELINE, POLICY, jitter=lambda: 0.0)
        fleet.begin(0)
        for role in ROLES[:-1]:
            fleet.ready(role, 1)
            assert not fleet.all_running
        fleet.ready("uploader", 2)
        assert fleet.all_running and fleet.ever_ready


class TestRestart:
    def test_uploader_restarts_alone_after_backoff(self, fleet: Fleet) -> None:
        assert fleet.exited("uploader", -9, now=20) == []
        assert state(fleet, "uploader") is S.BACKOFF
        assert fleet.next_deadline() == 20.5  # attempt 1: half of backoff_initial
        assert fleet.tick(20.4, fresh(20.4)) == []
        assert fleet.tick(20.5, fresh(20.5)) == [o(Verb.SPAWN, "uploader")]
        assert "uploader was killed by SIGKILL" in (fleet.problem or "")

    def test_a_pipeline_death_terminates_and_restarts_the_whole_pipeline(self, fleet: Fleet) -> None:
        orders = fleet.exited("enricher", -9, now=20)
        assert orders == [o(Verb.TERM, "poller"), o(Verb.TERM, "dbwriter")]
        assert fleet.tick(21, fresh(21)) == []  # poller and dbwriter still alive
        fleet.exited("poller", 0, now=22)
        assert fleet.tick(23, fresh(23)) == []
        fleet.exited("dbwriter", 0, now=24)
        assert fleet.tick(24, fresh(24)) == [o(Verb.REBUILD), o(Verb.SPAWN, "poller"),
                                             o(Verb.SPAWN, "enricher"), o(Verb.SPAWN, "dbwriter")]
        assert state(fleet, "uploader") is S.RUNNING

    def test_one_failure_counts_once_against_the_intensity(self, fleet: Fleet) -> None:
        fleet.exited("dbwriter", 1, now=20)
        fleet.exited("poller", 0, now=21)
        fleet.exited("enricher", 0, now=21)
        assert fleet.intensity.count(21) == 1

    def test_backoff_grows_while_restarts_keep_failing(self, fleet: Fleet) -> None:
        now, delays = 10.0, []
        for _ in range(3):
            fleet.exited("uploader", 1, now)
            delays.append(fleet.next_deadline() - now)
            now = fleet.next_deadline()
            fleet.tick(now, fresh(now))
        assert delays == [0.5, 1.0, 2.0]

    def test_too_many_restarts_give_up_with_restart_limit(self, fleet: Fleet) -> None:
        now = 10.0
        for _ in range(3):
            fleet.exited("uploader", 1, now)
            now = fleet.next_deadline()
            fleet.tick(now, fresh(now))
        orders = fleet.exited("uploader", 1, now)
        assert fleet.shutting_down and fleet.exit_code == ExitCode.RESTART_LIMIT
        assert o(Verb.STOP, "poller") in orders
        assert "giving up" in (fleet.problem or "")


class TestStuck:
    def test_silent_child_is_dumped_terminated_then_killed(self, fleet: Fleet) -> None:
        beats = fresh(20) | {"uploader": Pulse(5)}
        assert fleet.tick(15.5, beats) == [o(Verb.DUMP, "uploader"), o(Verb.TERM, "uploader")]
        assert state(fleet, "uploader") is S.STOPPING
        assert fleet.tick(20, beats) == []
        assert fleet.tick(20.5, beats) == [o(Verb.KILL, "uploader")]
        fleet.exited("uploader", -9, now=21)
        assert state(fleet, "uploader") is S.BACKOFF
        assert fleet.tick(21, fresh(21)) == [o(Verb.SPAWN, "uploader")]  # its backoff ran during the grace

    def test_stuck_pipeline_stage_takes_its_peers_down(self, fleet: Fleet) -> None:
        orders = fleet.tick(15, fresh(15) | {"dbwriter": Pulse(1)})
        assert orders == [o(Verb.DUMP, "dbwriter"), o(Verb.TERM, "dbwriter"),
                          o(Verb.TERM, "poller"), o(Verb.TERM, "enricher")]

    def test_beating_while_holding_work_without_progress_is_stuck(self, fleet: Fleet) -> None:
        held = lambda now, progress: fresh(now) | {"dbwriter": Pulse(now, progress, holding=True)}  # noqa: E731
        assert fleet.tick(2, held(2, 7)) == []
        assert fleet.tick(12, held(12, 7)) == []  # 10 s without progress: at the limit, not past it
        orders = fleet.tick(12.5, held(12.5, 7))
        assert orders[:2] == [o(Verb.DUMP, "dbwriter"), o(Verb.TERM, "dbwriter")]
        assert "holding work without progress" in (fleet.problem or "")

    def test_progress_or_an_empty_hand_keeps_a_child_healthy(self, fleet: Fleet) -> None:
        for now in range(2, 60, 3):  # progress every 3 s while holding work
            assert fleet.tick(now, fresh(now) | {"enricher": Pulse(now, now, holding=True)}) == []
        for now in range(60, 120, 3):  # no progress, but nothing held: idle, not stuck
            assert fleet.tick(now, fresh(now) | {"enricher": Pulse(now, 57, holding=False)}) == []
        assert fleet.tick(125, fresh(125) | {"enricher": Pulse(125, 57, holding=True)}) == []
        assert o(Verb.TERM, "enricher") in fleet.tick(135.5, fresh(135.5) | {"enricher": Pulse(135.5, 57, True)})

    def test_a_booting_child_gets_the_startup_allowance(self) -> None:
        fleet = Fleet(ROLES, PIPELINE, POLICY, jitter=lambda: 0.0)
        fleet.begin(0)
        beats = {role: Pulse(0.0) for role in ROLES}
        assert fleet.tick(39, beats) == []
        assert o(Verb.TERM, "uploader") in fleet.tick(40.5, beats)


class TestBootFailure:
    def test_bad_config_stops_everything_with_its_code(self) -> None:
        fleet = Fleet(ROLES, PIPELINE, POLICY, jitter=lambda: 0.0)
        fleet.begin(0)
        orders = fleet.exited("enricher", ExitCode.CONFIG, now=1)
        assert state(fleet, "enricher") is S.FATAL
        assert fleet.exit_code == ExitCode.CONFIG
        # The poller's drain could never reach the dead enricher: the dbwriter is released at once.
        assert set(orders) == {o(Verb.STOP, "poller"), o(Verb.STOP, "uploader"), o(Verb.TERM, "dbwriter")}

    def test_unreachable_database_after_the_first_ready_is_retried(self, fleet: Fleet) -> None:
        fleet.exited("uploader", 1, now=10)
        fleet.tick(10.5, fresh(10.5))
        fleet.exited("uploader", ExitCode.UNAVAILABLE, now=70)
        assert not fleet.shutting_down and state(fleet, "uploader") is S.BACKOFF


class TestShutdown:
    def test_intake_stages_get_stop_and_the_rest_wait_for_end_of_stream(self, fleet: Fleet) -> None:
        assert fleet.shutdown(10, ExitCode.OK) == [o(Verb.STOP, "poller"), o(Verb.STOP, "uploader")]
        assert all(state(fleet, role) is S.STOPPING for role in ROLES)
        for role in ("uploader", "poller", "enricher"):
            assert fleet.exited(role, 0, now=11) == []
        assert not fleet.finished
        fleet.exited("dbwriter", 0, now=12)
        assert fleet.finished and fleet.exit_code == ExitCode.OK

    def test_past_the_deadline_stragglers_get_term_then_kill(self, fleet: Fleet) -> None:
        fleet.shutdown(10, ExitCode.OK)
        assert fleet.tick(69, fresh(69)) == []
        assert fleet.tick(70, fresh(70)) == [o(Verb.TERM, role) for role in ROLES]
        assert fleet.tick(75, fresh(75)) == [o(Verb.KILL, role) for role in ROLES]

    def test_downstream_of_an_unclean_exit_is_released(self, fleet: Fleet) -> None:
        fleet.shutdown(10, ExitCode.OK)
        assert fleet.exited("poller", 0, now=11) == []
        assert fleet.exited("enricher", ExitCode.CRASH, now=12) == [o(Verb.TERM, "dbwriter")]

    def test_nothing_restarts_during_a_shutdown(self, fleet: Fleet) -> None:
        fleet.exited("uploader", 1, now=5)
        fleet.shutdown(5, ExitCode.OK)
        assert state(fleet, "uploader") is S.EXITED
        assert spawns(fleet.tick(100, fresh(100))) == []

    def test_the_first_reason_decides_the_exit_code(self, fleet: Fleet) -> None:
        fleet.shutdown(10, ExitCode.RESTART_LIMIT)
        assert fleet.shutdown(11, ExitCode.OK) == []
        assert fleet.exit_code == ExitCode.RESTART_LIMIT

    def test_hurry_escalates_on_the_next_tick(self, fleet: Fleet) -> None:
        fleet.shutdown(10, ExitCode.OK)
        fleet.hurry(11)
        assert fleet.tick(11, fresh(11)) == [o(Verb.TERM, role) for role in ROLES]


class TestReloadRestart:
    def test_restarting_one_pipeline_stage_drains_the_whole_pipeline(self, fleet: Fleet) -> None:
        assert fleet.restart({"enricher"}, now=10) == [o(Verb.STOP, "poller")]
        assert [state(fleet, r) for r in PIPELINE] == [S.STOPPING] * 3
        for role in PIPELINE:
            fleet.exited(role, 0, now=11)
        assert spawns(fleet.tick(11, fresh(11))) == list(PIPELINE)  # no backoff: nothing failed
        assert fleet.intensity.count(11) == 0

    def test_uploader_restarts_alone(self, fleet: Fleet) -> None:
        assert fleet.restart({"uploader"}, now=10) == [o(Verb.STOP, "uploader")]
        assert state(fleet, "poller") is S.RUNNING

    def test_a_failed_drain_releases_the_waiting_stages(self, fleet: Fleet) -> None:
        fleet.restart({"poller"}, now=10)
        assert fleet.exited("poller", ExitCode.CRASH, now=11) == [o(Verb.TERM, "enricher")]


class TestWatchdog:
    def test_healthy_then_unhealthy_past_the_budget_then_recovered(self, fleet: Fleet) -> None:
        budget = POLICY.unhealthy_budget
        fleet.tick(2, fresh(2))
        assert fleet.watchdog_ok(2)
        fleet.exited("uploader", 1, now=3)
        fleet.tick(3, fresh(3))
        assert fleet.watchdog_ok(3 + budget)
        assert not fleet.watchdog_ok(3 + budget + 0.1)
        fleet.children["uploader"].state = S.RUNNING  # it came back
        fleet.tick(100, fresh(100))
        assert fleet.watchdog_ok(100)

    def test_a_stale_beat_is_unhealthy(self, fleet: Fleet) -> None:
        fleet.tick(2, fresh(2))
        fleet.tick(5, fresh(5) | {"enricher": Pulse(1.0)})  # 4 s old: stale only after 10 s
        assert fleet.children["enricher"].unhealthy_since is None
        fleet.policy = Policy(**{**POLICY.__dict__, "heartbeat_timeout": 3})
        fleet.tick(5, fresh(5) | {"enricher": Pulse(1.0)})
        assert fleet.children["enricher"].unhealthy_since == 5


def test_set_policy_keeps_the_restart_history(fleet: Fleet) -> None:
    fleet.exited("uploader", 1, now=10)
    fleet.set_policy(Policy(**{**POLICY.__dict__, "restart_limit": 1}))
    assert fleet.intensity.limit == 1 and fleet.intensity.count(10) == 1
