"""One child's state machine and the restart policy, with plain numbers for time."""
from __future__ import annotations

import signal

import pytest

from mxarchiverd.config import DaemonConfig
from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.supervisor.children import (
    Child, ChildState, IllegalTransition, Policy, RestartIntensity, backoff_delay, boot_exit_code,
    describe_exit, is_stuck, next_attempt,
)

S = ChildState
POLICY = Policy(heartbeat_timeout=10, startup_timeout=30, stop_timeout=60, kill_grace=5,
                backoff_initial=0.5, backoff_max=30, restart_limit=3, restart_window=100)


class TestTransitions:
    def test_normal_life(self) -> None:
        child = Child("poller")
        for state, now in [(S.STARTING, 1), (S.RUNNING, 2), (S.STOPPING, 3), (S.BACKOFF, 4), (S.STARTING, 5)]:
            child.change(state, now)
        assert (child.state, child.since) == (S.STARTING, 5)

    @pytest.mark.parametrize("start, target", [
        (S.STOPPED, S.RUNNING), (S.RUNNING, S.STARTING), (S.RUNNING, S.EXITED),
        (S.BACKOFF, S.RUNNING), (S.EXITED, S.STARTING), (S.FATAL, S.STARTING), (S.RUNNING, S.FATAL),
    ])
    def test_illegal_transitions_raise(self, start: ChildState, target: ChildState) -> None:
        child = Child("poller", state=start)
        with pytest.raises(IllegalTransition, match=f"{start.value} -> {target.value}"):
            child.change(target, 1)

    def test_has_process(self) -> None:
        assert [s for s in S if Child("x", state=s).has_process] == [S.STARTING, S.RUNNING, S.STOPPING]


class TestBackoff:
    def test_doubles_from_initial_and_is_capped(self) -> None:
        steps = [backoff_delay(n, 0.5, 30, jitter=1.0) for n in range(1, 10)]
        assert steps == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]

    def test_jitter_spans_the_upper_half_of_the_step(self) -> None:
        assert backoff_delay(3, 0.5, 30, jitter=0.0) == 1.0
        assert backoff_delay(3, 0.5, 30, jitter=0.5) == 1.5

    def test_a_stable_run_resets_the_attempt_count(self) -> None:
        quick = Child("x", attempt=4, ready_at=100)
        assert next_attempt(quick, now=110, policy=POLICY) == 5
        assert next_attempt(quick, now=130, policy=POLICY) == 1
        assert next_attempt(Child("x", attempt=2, ready_at=None), now=1000, policy=POLICY) == 3


class TestStuck:
    def test_running_child_silent_past_the_heartbeat_timeout(self) -> None:
        child = Child("x", state=S.RUNNING, started_at=0)
        assert not is_stuck(child, last_beat=100, now=110, policy=POLICY)
        assert is_stuck(child, last_beat=100, now=110.1, policy=POLICY)

    def test_booting_child_may_also_wait_for_its_database(self) -> None:
        child = Child("x", state=S.STARTING, started_at=100)
        assert not is_stuck(child, last_beat=100, now=140, policy=POLICY)
        assert is_stuck(child, last_beat=100, now=140.1, policy=POLICY)

    def test_never_beating_counts_from_the_spawn(self) -> None:
        child = Child("x", state=S.RUNNING, started_at=50)
        assert not is_stuck(child, last_beat=0, now=60, policy=POLICY)
        assert is_stuck(child, last_beat=0, now=61, policy=POLICY)

    @pytest.mark.parametrize("state", [S.STOPPING, S.BACKOFF, S.STOPPED, S.EXITED])
    def test_only_live_unstopped_children_can_be_stuck(self, state: ChildState) -> None:
        assert not is_stuck(Child("x", state=state), last_beat=0, now=1e6, policy=POLICY)


class TestBootExit:
    @pytest.mark.parametrize("code", [ExitCode.CONFIG, ExitCode.SCHEMA_MISMATCH])
    def test_config_and_schema_stop_the_supervisor(self, code: int) -> None:
        assert boot_exit_code(code, S.STARTING, ever_ready=True) == code

    def test_unreachable_database_only_at_the_first_start(self) -> None:
        assert boot_exit_code(ExitCode.UNAVAILABLE, S.STARTING, ever_ready=False) == ExitCode.UNAVAILABLE
        assert boot_exit_code(ExitCode.UNAVAILABLE, S.STARTING, ever_ready=True) is None

    def test_crashes_and_exits_after_boot_are_ordinary_failures(self) -> None:
        assert boot_exit_code(ExitCode.CRASH, S.STARTING, ever_ready=False) is None
        assert boot_exit_code(ExitCode.CONFIG, S.RUNNING, ever_ready=False) is None


def test_describe_exit() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL (out of memory?)"
    assert describe_exit(-signal.SIGSEGV) == "was killed by SIGSEGV"
    assert describe_exit(-200) == "was killed by signal 200"


class TestIntensity:
    def test_more_than_limit_within_window_gives_up(self) -> None:
        intensity = RestartIntensity(limit=3, window=100)
        assert [intensity.record(t) for t in (0, 10, 20)] == [True, True, True]
        assert intensity.record(30) is False

    def test_old_restarts_age_out(self) -> None:
        intensity = RestartIntensity(limit=2, window=100)
        assert intensity.record(0) and intensity.record(50)
        assert intensity.record(100.5)  # the one at 0 is out of the window
        assert intensity.count(150.5) == 1


def test_policy_from_config_and_budget() -> None:
    policy = Policy.from_config(DaemonConfig(stop_timeout=3.0))
    assert policy.kill_grace == 3.0
    assert Policy.from_config(DaemonConfig()).kill_grace == 5.0
    assert POLICY.unhealthy_budget == 10 + 5 + 30 + 30
