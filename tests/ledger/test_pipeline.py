"""The pipeline on its own: generic jobs, their order, leases and attempt numbers.

A job kind defined here (not fulfilment) shows the path is reusable: claim an event, apply,
record jobs, commit, run them. Every test runs on SQLite and, with STRIPE_CHECKOUT_TEST_PG,
on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from stripe_checkout_mw.ledger.dialects import SQLiteDialect
from stripe_checkout_mw.ledger.pipeline import (
    Applied,
    EventClaim,
    JobFailed,
    JobKind,
    JobsPending,
    Pipeline,
)
from stripe_checkout_mw.ledger.store import Job, NewJob, OrderStore, StoreTransaction


class Recorder(JobKind):
    """A job kind that records (key, attempt) per run; can fail or block."""

    def __init__(self, kind: str = "note") -> None:
        self.kind = kind
        self.runs: list[tuple[str, int]] = []
        self.done_keys: list[str] = []
        self.fail_next = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def run(self, job: Job, known: Mapping[str, Any]) -> None:
        self.started.set()
        assert self.release.wait(30)
        self.runs.append((job.key, job.attempt))
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("side effect failed")

    def done(self, tx: StoreTransaction, job: Job) -> None:
        self.done_keys.append(job.key)


def record(*jobs: NewJob) -> Any:
    return lambda tx: Applied(list(jobs))


def test_jobs_run_after_the_commit_in_the_order_they_were_recorded(store: OrderStore) -> None:
    first, second = Recorder("first"), Recorder("second")
    seen_in_ledger: list[bool] = []
    first.run = lambda job, known: (  # type: ignore[method-assign]
        seen_in_ledger.append(store.event_processed("evt_1")), first.runs.append((job.key, 1)))
    pipeline = Pipeline(store, [first, second])
    outcome = pipeline.process(
        record(NewJob("second", "b", "subject"), NewJob("first", "a", "subject")),
        subject="subject", event=EventClaim("evt_1", "thing.happened"),
    )
    assert seen_in_ledger == [True]  # the claim was committed before the job ran
    assert [job.kind for job in outcome.ran] == ["second", "first"]
    assert second.done_keys == ["b"]
    assert store.pending_jobs("subject") == []
    again = pipeline.process(record(NewJob("first", "c", "subject")), subject="subject",
                             event=EventClaim("evt_1", "thing.happened"))
    assert again.duplicate and again.ran == [] and first.runs == [("a", 1)]


def test_a_failed_job_is_retried_with_a_higher_attempt_and_later_jobs_wait(
    store: OrderStore,
) -> None:
    first, second = Recorder("first"), Recorder("second")
    pipeline = Pipeline(store, [first, second])
    first.fail_next = 1
    with pytest.raises(JobFailed) as caught:
        pipeline.process(record(NewJob("first", "a", "s"), NewJob("second", "b", "s")),
                         subject="s", event=EventClaim("evt_1", "x"))
    assert caught.value.job.attempt == 1
    assert second.runs == []
    assert [(j.kind, j.attempt) for j in store.pending_jobs("s")] == [("first", 1),
                                                                     ("second", 0)]
    time.sleep(0.01)  # the first retry is due after its backoff (about a millisecond here)
    outcome = pipeline.process(None, subject="s", event=EventClaim("evt_1", "x"))
    assert outcome.duplicate
    assert first.runs == [("a", 1), ("a", 2)]
    assert second.runs == [("b", 1)]  # never started before: its first attempt is 1
    assert store.pending_jobs("s") == []


def test_a_held_lease_keeps_a_second_worker_off_the_job(store_url: str) -> None:
    from stripe_checkout_mw.ledger.store import open_store

    with open_store(store_url) as one, open_store(store_url) as two:
        slow, other = Recorder(), Recorder()
        slow.release.clear()
        worker_a = Pipeline(one, [slow], lease=30)
        worker_b = Pipeline(two, [other], lease=30)
        errors: list[BaseException] = []

        def first() -> None:
            try:
                worker_a.process(record(NewJob("note", "k", "s")), subject="s",
                                 event=EventClaim("evt_1", "x"))
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=first)
        thread.start()
        assert slow.started.wait(30)
        # The redelivery and the lookup find the job leased to the first worker.
        with pytest.raises(JobsPending):
            worker_b.process(None, subject="s", event=EventClaim("evt_1", "x"))
        with pytest.raises(JobsPending):
            worker_b.process(None, subject="s")
        assert other.runs == []
        slow.release.set()
        thread.join(30)
        assert errors == [] and slow.runs == [("k", 1)]
        assert worker_b.process(None, subject="s").ran == []


def test_an_expired_lease_is_taken_over_with_the_next_attempt(store: OrderStore) -> None:
    runner = Recorder()
    pipeline = Pipeline(store, [runner], lease=1)
    # A worker that leased the job and died: its lease is in the ledger, its run never was.
    with store.transaction() as tx:
        tx.enqueue(NewJob("note", "k", "s"))
        leased, held = tx.lease_due("s", 1)
    assert [job.attempt for job in leased()] == [1] and not held
    with pytest.raises(JobsPending):
        pipeline.process(None, subject="s")
    time.sleep(1.1)
    assert [job.attempt for job in pipeline.process(None, subject="s").ran] == [2]
    assert runner.runs == [("k", 2)]


def test_a_job_of_a_kind_this_pipeline_cannot_run_waits(store: OrderStore) -> None:
    pipeline = Pipeline(store, [Recorder("known")])
    with pytest.raises(JobsPending):
        pipeline.process(record(NewJob("unknown", "k", "s"), NewJob("known", "j", "s")),
                         subject="s")
    assert [(j.kind, j.attempt) for j in store.pending_jobs("s")] == [("unknown", 0),
                                                                     ("known", 0)]


def test_nothing_runs_when_the_transaction_cannot_commit(store: OrderStore) -> None:
    runner = Recorder()
    pipeline = Pipeline(store, [runner])

    def apply(tx: StoreTransaction) -> Applied:
        raise RuntimeError("apply failed")

    with pytest.raises(RuntimeError):
        pipeline.process(apply, subject="s", event=EventClaim("evt_1", "x"))
    assert runner.runs == [] and not store.event_processed("evt_1")


def test_a_job_recorded_again_runs_only_while_it_is_due(store: OrderStore) -> None:
    # The same kind and key is the same job: recording it again neither runs a done job
    # again nor runs a pending one twice, and a job of another subject is recorded unleased.
    runner = Recorder()
    pipeline = Pipeline(store, [runner])
    pipeline.process(record(NewJob("note", "k", "s")), subject="s",
                     event=EventClaim("evt_1", "thing.happened"))
    assert runner.runs == [("k", 1)]
    outcome = pipeline.process(record(NewJob("note", "k", "s"), NewJob("note", "j", "other")),
                               subject="s", event=EventClaim("evt_2", "thing.happened"))
    assert outcome.ran == [] and runner.runs == [("k", 1)]
    assert [(j.key, j.attempt) for j in store.pending_jobs("other")] == [("j", 0)]

    with store.transaction() as tx:
        tx.enqueue(NewJob("note", "p", "s"))  # pending, leased by nobody
    outcome = pipeline.process(record(NewJob("note", "p", "s"), NewJob("note", "q", "s")),
                               subject="s", event=EventClaim("evt_3", "thing.happened"))
    assert [(j.key, j.attempt) for j in outcome.ran] == [("p", 1), ("q", 1)]
    assert runner.runs == [("k", 1), ("p", 1), ("q", 1)]


def test_a_job_the_apply_step_closes_does_not_run(store: OrderStore) -> None:
    # The claim reads the subject's pending jobs ahead of the apply step; one that the apply
    # step then closes (drop_pending: no longer due) must not run on that early read.
    runner, other = Recorder(), Recorder("other")
    pipeline = Pipeline(store, [runner, other])
    with store.transaction() as tx:
        tx.enqueue(NewJob("note", "stale", "s"))

    def close_it(tx: StoreTransaction) -> Applied:
        assert tx.drop_pending("s", "note") == 1
        return Applied([NewJob("other", "fresh", "s")])

    outcome = pipeline.process(close_it, subject="s", event=EventClaim("evt_1", "x"))
    assert [job.key for job in outcome.ran] == ["fresh"]
    assert runner.runs == [] and store.pending_jobs("s") == []


def test_new_jobs_wait_behind_a_held_one(store: OrderStore) -> None:
    runner = Recorder()
    pipeline = Pipeline(store, [runner], lease=30)
    with store.transaction() as tx:
        leased, _ = tx.lease_due("s", 30, [NewJob("note", "first", "s")])
    assert [job.key for job in leased()] == ["first"]  # another worker's, still running
    outcome = pipeline.process(record(NewJob("note", "second", "s")), subject="s",
                               event=EventClaim("evt_1", "x"))
    assert outcome.ran == [] and runner.runs == []
    assert [(j.key, j.attempt) for j in store.pending_jobs("s")] == [("first", 1),
                                                                     ("second", 0)]


class SyncSetting(Recorder):
    """Records, in the transaction that marks its job done, how that transaction commits."""

    def __init__(self) -> None:
        super().__init__()
        self.settings: list[str] = []

    def done(self, tx: StoreTransaction, job: Job) -> None:
        if isinstance(tx.store.dialect, SQLiteDialect):
            row = tx.store.dialect.fetchone(tx.conn, "PRAGMA synchronous", ())
            self.settings.append({0: "OFF", 1: "NORMAL", 2: "FULL"}[int(row[0])] if row else "")
        else:
            row = tx.store.dialect.fetchone(tx.conn, "SHOW synchronous_commit", ())
            self.settings.append(str(row[0]) if row else "")


def test_a_done_mark_survives_the_database_crashing(store: OrderStore) -> None:
    # SQLite: synchronous=NORMAL in WAL mode (written to the WAL file at commit, so only a
    # power loss can lose it). PostgreSQL has nothing between waiting for the WAL flush and
    # keeping the commit in the server's memory, where a server crash loses it: it waits.
    runner = SyncSetting()
    Pipeline(store, [runner]).process(record(NewJob("note", "k", "s")), subject="s",
                                      event=EventClaim("evt_1", "x"))
    sqlite = isinstance(store.dialect, SQLiteDialect)
    assert runner.settings == (["NORMAL"] if sqlite else ["on"])
    # The checkout's own write stays lazy on both: a lost one is recovered from Stripe.
    with store.transaction(durable=False) as tx:
        lazy = SyncSetting()
        lazy.done(tx, Job(0, "note", "k", "s", {}, 1))
    assert lazy.settings == (["NORMAL"] if sqlite else ["off"])
