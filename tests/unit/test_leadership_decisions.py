"""Who leads (daemon.ha): the lease keeper's decisions and the supervisor's gating of the
pipeline, driven by a fake clock; no database, no processes."""
from __future__ import annotations

import math

import pytest

from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.leadership import (
    Act, PipelineGate, Standing, Timing, after_acquire, after_error, after_renew, leading_token, next_act,
    round_delay,
)
from mxarchiverd.pipeline.heartbeat import Pulse
from mxarchiverd.supervisor.children import ChildState, Policy
from mxarchiverd.supervisor.fleet import Fleet, Order, Verb

S = ChildState
TIMING = Timing(duration=6.0, renew_interval=2.0)
ROLES = ("lease", "poller", "enricher", "dbwriter", "uploader")
PIPELINE = ("poller", "enricher", "dbwriter")
POLICY = Policy(heartbeat_timeout=10, startup_timeout=30, stop_timeout=60, kill_grace=5,
                backoff_initial=1, backoff_max=8, restart_limit=3, restart_window=100)


class TestKeeper:
    def test_a_new_keeper_tries_to_take_the_lease_at_once(self) -> None:
        assert next_act(Standing(), 0.0) is Act.ACQUIRE
        assert round_delay(Standing(), 0.0) == 0.0

    def test_a_granted_lease_is_trusted_for_its_duration_from_when_the_request_was_sent(self) -> None:
        standing = after_acquire(Standing(), 7, sent_at=10.0, timing=TIMING)
        assert standing.token == 7 and standing.since == 10.0
        assert standing.leading(15.99) and not standing.leading(16.0)
        assert next_act(standing, 11.0) is Act.RENEW
        assert round_delay(standing, 10.5) == pytest.approx(1.5)  # next renewal at 12

    def test_a_standby_looks_again_after_the_renew_interval(self) -> None:
        standing = after_acquire(Standing(), None, sent_at=10.0, timing=TIMING)
        assert standing.token is None and not standing.leading(10.0)
        assert round_delay(standing, 10.0) == 2.0 and next_act(standing, 12.0) is Act.ACQUIRE

    def test_a_renewal_extends_from_its_own_send_time(self) -> None:
        held = after_acquire(Standing(), 3, 0.0, TIMING)
        renewed = after_renew(held, True, sent_at=2.0, timing=TIMING)
        assert renewed.token == 3 and renewed.valid_until == 8.0 and renewed.since == 0.0
        assert renewed.next_round == 4.0

    def test_a_refused_renewal_steps_down_and_tries_to_take_the_lease_at_once(self) -> None:
        held = after_acquire(Standing(), 3, 0.0, TIMING)
        lost = after_renew(held, False, sent_at=2.0, timing=TIMING)
        assert not lost.leading(2.0) and lost.token is None
        assert next_act(lost, 2.0) is Act.ACQUIRE and round_delay(lost, 2.0) == 0.0

    def test_without_answers_the_lease_runs_out_by_the_clock(self) -> None:
        standing = after_acquire(Standing(), 3, 0.0, TIMING)
        for now in (2.0, 2.6, 3.2, 3.8, 4.4, 5.0, 5.6):  # the database does not answer
            standing = after_error(standing, now, TIMING)
            assert standing.leading(now)
        assert not standing.leading(6.0)
        assert next_act(standing, 6.0) is Act.ACQUIRE  # a new token, even if nobody took it meanwhile

    def test_a_failed_statement_is_retried_sooner_than_a_round(self) -> None:
        standing = after_error(Standing(), 1.0, TIMING)
        assert 1.0 < standing.next_round < 1.0 + TIMING.renew_interval

    def test_the_keeper_wakes_when_its_lease_runs_out(self) -> None:
        standing = after_error(after_acquire(Standing(), 3, 0.0, TIMING), 5.9, Timing(6.0, 3.0))
        assert round_delay(standing, 5.9) == pytest.approx(0.1)


class TestSupervisorReading:
    @pytest.mark.parametrize(("until", "token", "now", "expected"), [
        (16.0, 7.0, 15.0, 7),
        (16.0, 7.0, 16.0, None),   # run out by the supervisor's own clock (a hung keeper)
        (0.0, 0.0, 1.0, None),     # a standby's slot
        (math.inf, 0.0, 1.0, None),
    ])
    def test_leading_token(self, until: float, token: float, now: float, expected: int | None) -> None:
        assert leading_token(until, token, now) == expected


class TestGate:
    def test_without_ha_the_pipeline_always_may_run(self) -> None:
        gate = PipelineGate(enabled=False)
        assert gate.may_start() and not gate.update(None)

    def test_with_ha_only_under_the_token_it_started_with(self) -> None:
        gate = PipelineGate(enabled=True)
        assert not gate.may_start()
        assert not gate.update(4) and gate.may_start()
        gate.started()
        assert gate.running_token == 4
        assert not gate.update(4)
        assert gate.update(5) and gate.running_token is None  # lost and taken again: restart under 5

    def test_a_refused_token_is_never_used_again(self) -> None:
        gate = PipelineGate(enabled=True)
        gate.update(4)
        gate.started()
        assert gate.refuse() and not gate.may_start()
        assert not gate.update(4) and not gate.may_start()  # the keeper has not noticed yet
        assert not gate.update(6) and gate.may_start()


def o(verb: Verb, role: str = "") -> Order:
    return Order(verb, role)


def fresh(now: float) -> dict[str, Pulse]:
    return {role: Pulse(now) for role in ROLES}


@pytest.fixture
def standby() -> Fleet:
    """A daemon whose lease keeper and uploader run, while another daemon leads."""
    fleet = Fleet(ROLES, PIPELINE, POLICY, jitter=lambda: 0.0, gated=True, last=("lease",))
    assert fleet.begin(0) == [o(Verb.SPAWN, "lease"), o(Verb.SPAWN, "uploader")]
    fleet.ready("lease", 1)
    fleet.ready("uploader", 1)
    return fleet


def leader(fleet: Fleet, token: int = 4, now: float = 2) -> Fleet:
    fleet.set_leadership(token, now)
    assert fleet.tick(now, fresh(now)) == [o(Verb.REBUILD), o(Verb.SPAWN, "poller"), o(Verb.SPAWN, "enricher"),
                                           o(Verb.SPAWN, "dbwriter")]
    for role in PIPELINE:
        fleet.ready(role, now + 1)
    return fleet


class TestFleetLeadership:
    def test_a_standby_is_ready_and_healthy_without_its_pipeline(self, standby: Fleet) -> None:
        assert standby.all_running and standby.ever_ready and standby.standing_by
        for now in (50.0, 500.0):
            assert standby.tick(now, fresh(now)) == []
            assert standby.watchdog_ok(now)

    def test_taking_the_lease_starts_the_pipeline_under_its_token(self, standby: Fleet) -> None:
        fleet = leader(standby, token=4)
        assert fleet.gate.running_token == 4 and not fleet.standing_by and fleet.all_running

    def test_losing_the_lease_stops_the_pipeline_without_counting_a_failure(self, standby: Fleet) -> None:
        fleet = leader(standby)
        assert fleet.set_leadership(None, 10) == [o(Verb.TERM, "poller"), o(Verb.TERM, "enricher"),
                                                  o(Verb.TERM, "dbwriter")]
        for role in PIPELINE:
            assert fleet.exited(role, 0, 11) == []
        assert fleet.tick(12, fresh(12)) == []  # standing by: nothing restarts
        assert fleet.intensity.count(12) == 0 and fleet.watchdog_ok(500)
        assert fleet.children["uploader"].state is S.RUNNING

    def test_a_new_token_restarts_the_pipeline_under_it(self, standby: Fleet) -> None:
        fleet = leader(standby, token=4)
        assert len(fleet.set_leadership(6, 10)) == 3
        for role in PIPELINE:
            fleet.exited(role, 0, 11)
        assert fleet.tick(11, fresh(11))[0] == o(Verb.REBUILD)
        assert fleet.gate.running_token == 6

    def test_a_fenced_dbwriter_makes_the_daemon_stand_by_before_its_keeper_notices(self, standby: Fleet) -> None:
        fleet = leader(standby, token=4)
        assert fleet.exited("dbwriter", ExitCode.FENCED, 10) == [o(Verb.TERM, "poller"), o(Verb.TERM, "enricher")]
        fleet.exited("poller", 0, 11)
        fleet.exited("enricher", 0, 11)
        fleet.set_leadership(4, 12)  # the keeper's slot still shows the old token
        assert fleet.tick(12, fresh(12)) == [] and fleet.standing_by
        assert fleet.intensity.count(12) == 0 and "taken over" in (fleet.problem or "")

    def test_the_lease_keeper_stops_only_after_the_pipeline_has_drained(self, standby: Fleet) -> None:
        fleet = leader(standby)
        orders = fleet.shutdown(20, 0)
        assert o(Verb.STOP, "lease") not in orders and o(Verb.STOP, "poller") in orders
        assert fleet.exited("poller", 0, 21) == [] and fleet.exited("enricher", 0, 21) == []
        assert fleet.children["lease"].state is S.RUNNING
        assert fleet.exited("dbwriter", 0, 21) == [o(Verb.STOP, "lease")]
        assert fleet.children["lease"].state is S.STOPPING
        fleet.exited("uploader", 0, 22)
        fleet.exited("lease", 0, 22)
        assert fleet.finished

    def test_a_standby_stops_its_keeper_at_once(self, standby: Fleet) -> None:
        orders = standby.shutdown(20, 0)
        assert set(orders) == {o(Verb.STOP, "lease"), o(Verb.STOP, "uploader")}
