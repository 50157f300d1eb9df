"""Failed jobs retry on a schedule, and a running job keeps its lease.

Whoever asks (a status lookup, a redelivered event, ``sync``), a job whose last attempt
raised is not run again before its backoff has passed; and a job that runs longer than its
lease is never started a second time beside itself. Every test runs on SQLite and, with
STRIPE_CHECKOUT_TEST_PG, on PostgreSQL, with the schedule's real arithmetic (the suite's
fast-retry default is overridden by passing ``retry_base`` explicitly).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from stripe_checkout_mw.ledger.pipeline import (
    Applied,
    EventClaim,
    JobFailed,
    JobKind,
    JobsPending,
    JobsScheduled,
    Pipeline,
    retry_delay,
)
from stripe_checkout_mw.ledger.reports import LedgerReports
from stripe_checkout_mw.ledger.store import Job, NewJob, OrderStore


class Failing(JobKind):
    """A job kind that always raises, recording when each attempt started."""

    kind = "note"

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []
        self._lock = threading.Lock()

    def run(self, job: Job, known: Mapping[str, Any]) -> None:
        with self._lock:
            self.calls.append((job.attempt, time.monotonic()))
        raise RuntimeError("warehouse down")


def _fail_once(pipeline: Pipeline) -> None:
    with pytest.raises(JobFailed):
        pipeline.process(lambda tx: Applied([NewJob("note", "a", "s")]), subject="s",
                         event=EventClaim("evt_1", "x"))


def test_the_delay_doubles_per_attempt_is_capped_and_jittered_within_half() -> None:
    assert retry_delay(1, 2.0, 900.0, lambda: 0.0) == 1.0
    assert retry_delay(1, 2.0, 900.0, lambda: 0.999999) == pytest.approx(2.0)
    assert retry_delay(4, 2.0, 900.0, lambda: 0.999999) == pytest.approx(16.0)
    assert retry_delay(30, 2.0, 900.0, lambda: 0.999999) == pytest.approx(900.0)
    assert retry_delay(10_000, 2.0, 900.0, lambda: 0.0) == 450.0  # no overflow


def test_a_failed_job_is_not_run_again_before_its_backoff_whoever_asks(
    store: OrderStore,
) -> None:
    runner = Failing()
    pipeline = Pipeline(store, [runner], retry_base=60.0)
    before = time.time()
    _fail_once(pipeline)
    for _ in range(50):  # status lookups, redeliveries
        with pytest.raises(JobsScheduled) as caught:
            pipeline.process(None, subject="s")
        with pytest.raises(JobsScheduled):
            pipeline.process(None, subject="s", event=EventClaim("evt_1", "x"))
    assert [attempt for attempt, _ in runner.calls] == [1]
    assert before + 30.0 <= caught.value.due_at <= time.time() + 60.0
    assert isinstance(caught.value, JobsPending)  # callers answer "try again" as before
    # sync/fulfil-pending find nothing due either; the ledger shows the attempt and time.
    assert store.subjects_with_jobs_due(time.time()) == []
    assert store.subjects_with_jobs_due(caught.value.due_at + 1) == ["s"]
    [row] = LedgerReports(store).jobs_of("s")
    assert (row.attempt, row.retry_at) == (1, pytest.approx(caught.value.due_at))
    [waiting] = LedgerReports(store).waiting_jobs(time.time(), 10)  # fulfil-pending's list
    assert waiting[:4] == ("note", "a", "s", 1)
    assert LedgerReports(store).waiting_jobs(caught.value.due_at + 1, 10) == []


def test_a_job_waiting_for_its_retry_counts_as_failed_not_due(store: OrderStore) -> None:
    pipeline = Pipeline(store, [Failing()], retry_base=60.0)
    _fail_once(pipeline)
    stats = store.job_stats()
    # Nothing can run before the backoff has passed; the operator sees the failure.
    assert (stats.due, stats.failed) == ({"note": 0}, {"note": 1})
    assert stats.oldest_due_age is not None and stats.oldest_due_age >= 0.0


def test_strangers_get_one_call_per_backoff_step(store: OrderStore) -> None:
    runner = Failing()
    base = 0.2
    pipeline = Pipeline(store, [runner], retry_base=base)
    _fail_once(pipeline)
    deadline = time.monotonic() + 1.6
    asked = [0]

    def stranger() -> None:
        while time.monotonic() < deadline:
            asked[0] += 1
            with contextlib.suppress(JobsPending, JobFailed):
                pipeline.process(None, subject="s")

    threads = [threading.Thread(target=stranger) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    attempts = [attempt for attempt, _ in runner.calls]
    assert attempts == list(range(1, len(attempts) + 1))  # numbered, never twice at once
    # Each step waits at least half its nominal delay: 0.1, 0.2, 0.4, 0.8 s ...
    for (attempt, started), (_, next_started) in zip(runner.calls, runner.calls[1:]):
        assert next_started - started >= 0.5 * base * 2 ** (attempt - 1) - 0.01
    assert len(attempts) <= 5 and asked[0] > 10 * len(attempts)


def test_a_job_slower_than_its_lease_keeps_it_and_never_runs_twice_at_once(
    store: OrderStore,
) -> None:
    running = threading.Event()
    finish = threading.Event()
    active = [0]
    overlaps = [0]
    runs: list[int] = []

    class Slow(JobKind):
        kind = "note"

        def run(self, job: Job, known: Mapping[str, Any]) -> None:
            active[0] += 1
            overlaps[0] = max(overlaps[0], active[0])
            runs.append(job.attempt)
            running.set()
            assert finish.wait(30)
            active[0] -= 1

    pipeline = Pipeline(store, [Slow()], lease=1.0)
    worker = threading.Thread(target=lambda: pipeline.process(
        lambda tx: Applied([NewJob("note", "a", "s")]), subject="s",
        event=EventClaim("evt_1", "x")))
    worker.start()
    assert running.wait(10)
    other = Pipeline(store, [Slow()], lease=1.0)  # another process's worker
    held = 0
    until = time.monotonic() + 2.5  # 2.5 leases
    while time.monotonic() < until:
        try:
            other.process(None, subject="s")
        except JobsPending as exc:
            held += 1
            assert not isinstance(exc, JobsScheduled)
        time.sleep(0.05)
    finish.set()
    worker.join(10)
    assert runs == [1] and overlaps[0] == 1 and held > 10
    assert store.pending_jobs("s") == []


class QuickNote(JobKind):
    """A job that is done at once (the heartbeat tests watch only the thread)."""

    kind = "note"

    def run(self, job: Job, known: Mapping[str, Any]) -> None:
        pass


def test_the_heartbeat_thread_ends_when_idle_and_comes_back_with_the_next_job(
    store: OrderStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("stripe_checkout_mw.ledger.pipeline.HEARTBEAT_IDLE", 0.1)

    pipeline = Pipeline(store, [QuickNote()])
    for number in (1, 2):
        pipeline.process(lambda tx, n=number: Applied([NewJob("note", f"k{n}", "s")]),
                         subject="s", event=EventClaim(f"evt_{number}", "x"))
        thread = pipeline._heartbeat._thread
        assert thread is not None
        thread.join(5)
        assert not thread.is_alive() and pipeline._heartbeat._thread is None


def test_closing_the_pipeline_ends_the_idle_heartbeat_at_once_and_a_later_job_restarts_it(
    store: OrderStore,
) -> None:
    """An orderly shutdown (``mw.close()``) leaves no thread behind for its idle time."""

    pipeline = Pipeline(store, [QuickNote()])
    for number in (1, 2):
        pipeline.process(lambda tx, n=number: Applied([NewJob("note", f"k{n}", "s")]),
                         subject="s", event=EventClaim(f"evt_{number}", "x"))
        thread = pipeline._heartbeat._thread
        assert thread is not None and thread.is_alive()
        started = time.monotonic()
        pipeline.close()
        thread.join(5)
        # Well under HEARTBEAT_IDLE (2 s), which the thread would otherwise wait out.
        assert not thread.is_alive() and time.monotonic() - started < 1.0
        assert pipeline._heartbeat._thread is None
