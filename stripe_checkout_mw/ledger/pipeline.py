"""The one path by which news from Stripe changes the ledger and causes side effects.

Every source of news (a webhook delivery, the success page's status lookup, later a
reconciliation against Stripe's Events API) goes through :meth:`Pipeline.process`:

1. **one durable transaction**: claim the event id (a duplicate applies nothing), apply what
   Stripe says (move the order), record the jobs that became due (:class:`~.store.NewJob`:
   fulfil this order, run the handlers of that event), and lease the subject's due jobs
   (each lease increments the job's attempt number and holds it until now + ``lease``; a
   new job is leased as it is recorded); commit. On PostgreSQL this is two round trips:
   the claim also reads the order and the pending jobs, and the writes go with the commit;
2. **after the commit**, run the leased jobs in the order they were recorded, outside any
   transaction; each finished job is marked done in a short transaction of its own, which
   survives the database crashing (``crash_safe``; see :mod:`~stripe_checkout_mw.ledger.store`).

Nothing is called before step 1 has committed, so a database that cannot commit means nothing
runs (the caller answers 500 and Stripe delivers again). A job runs again only when its last
attempt's outcome was not recorded (it raised, its worker stopped, or the "done" mark could
not be written), and never while another worker holds its lease. A redelivered event, a
status lookup or a reconciliation finds the jobs still pending and runs them the same way.

**Retries follow a schedule, not the callers.** An attempt that raised is not due again at
once: its lease is handed back with a ``retry_at`` in the ledger, ``retry_base * 2 **
(attempt - 1)`` seconds later (capped at ``retry_cap``), of which a random 50-100 % is taken
so that many failed jobs do not all come due together. Until then a status lookup, a
redelivery or ``sync`` finds the job not due and runs nothing (:class:`JobsScheduled`), so
``fulfill``, a handler or a billing hook is called at most once per backoff step however
many strangers ask. A worker that stops without a word leaves its lease to expire (``lease``
seconds): that too is a backoff.

**A running job keeps its lease.** While a job runs, a heartbeat (one thread per pipeline,
started on first use) extends its lease every ``lease / 3`` seconds, in a small transaction
of its own; so a ``fulfill`` slower than ``lease`` is never run a second time beside itself.
The heartbeat writes nothing for a job that finishes within ``lease / 3``: the first,
successful delivery costs no extra round trip.

Jobs are generic (a kind, a key, a subject, a JSON payload); a :class:`JobKind` says how one
kind runs and what its completion writes. Processed-event rows are pruned here too, in small
batches after new events, once they are older than the retention.

Usage (what an event applier of :mod:`stripe_checkout_mw.news.router` does)::

    pipeline = Pipeline(store, [FulfilJob(store, fulfill)], lease=300, retention_days=30)
    outcome = pipeline.process(apply, subject=session_id,
                               event=EventClaim(event_id, event_type, session_id))
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from .store import Blocked, Job, Ledger, NewJob, StoreError, StoreTransaction

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_RETENTION_DAYS",
    "DEFAULT_RETRY_BASE",
    "DEFAULT_RETRY_CAP",
    "Applied",
    "EventClaim",
    "JobFailed",
    "JobKind",
    "JobsPending",
    "JobsScheduled",
    "Outcome",
    "Pipeline",
    "retry_delay",
]

logger = logging.getLogger("stripe_checkout_mw")

#: Seconds a job's lease lasts: longer than any ``fulfill`` may take.
DEFAULT_LEASE = 300.0
#: Days a processed event id is kept (Stripe retries a delivery for 3 days).
DEFAULT_RETENTION_DAYS = 30.0
#: Seconds before the first retry of a failed job; each further failure doubles it.
DEFAULT_RETRY_BASE = 2.0
#: The longest wait between two attempts of a failed job (Stripe redelivers for 3 days).
DEFAULT_RETRY_CAP = 900.0
#: Seconds the heartbeat thread waits for a job to run before it ends: short, so that a
#: shop that is closed leaves no thread behind for long; starting one again costs no I/O.
HEARTBEAT_IDLE = 2.0
#: Rows deleted per pruning transaction; small, so it never holds the write lock for long.
PRUNE_BATCH = 200
#: Seconds between pruning attempts when the last one found nothing more to delete.
PRUNE_INTERVAL = 60.0


class JobKind(abc.ABC):
    """How one kind of job runs (outside any transaction) and what its completion records."""

    #: The ``kind`` of the jobs this runs.
    kind: str

    @abc.abstractmethod
    def run(self, job: Job, known: Mapping[str, Any]) -> None:
        """Do the job's side effect; raise to have it retried. ``known`` holds what the
        transaction that leased it produced (for instance the order), keyed by subject, so
        the runner need not read it again; it may be empty."""

    def done(self, tx: StoreTransaction, job: Job) -> None:  # noqa: B027  # optional hook
        """Record the job's outcome, in the transaction that marks it done (called before the
        job row is updated: lock the subject's rows only, as the apply step does)."""


@dataclass(frozen=True)
class EventClaim:
    """The event a :meth:`Pipeline.process` call claims: at most once per ``event_id``."""

    event_id: str
    event_type: str
    session_id: str | None = None


@dataclass
class Applied:
    """What an ``apply`` step produced: the jobs now due, and a value for the caller."""

    jobs: list[NewJob] = field(default_factory=list)
    value: Any = None
    known: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """What :meth:`Pipeline.process` did."""

    duplicate: bool
    value: Any
    ran: list[Job]

    def ran_kind(self, kind: str) -> bool:
        return any(job.kind == kind for job in self.ran)


class JobFailed(Exception):
    """A job raised; it is due again after its backoff (``retry_at`` in the ledger)."""

    def __init__(self, job: Job, cause: BaseException) -> None:
        super().__init__(f"job {job.kind} {job.key} attempt {job.attempt} failed: "
                         f"{type(cause).__name__}")
        self.job = job
        self.cause = cause


class JobsPending(Exception):
    """Jobs of the subject are still due: another worker holds one, a failed one waits for
    its retry time (:class:`JobsScheduled`), or a job's completion could not be recorded.
    Nothing is lost; the caller should answer "try again" (a webhook: a 5xx, so that
    Stripe delivers it again)."""

    #: When the caller may usefully try again (a Unix time; 0 when unknown).
    due_at: float = 0.0


class JobsScheduled(JobsPending):
    """A job of the subject failed and is not due again before ``due_at``: nothing ran."""

    def __init__(self, subject: str, due_at: float) -> None:
        super().__init__(f"a job of {subject} failed and is due again in "
                         f"{max(0.0, due_at - time.time()):.0f} s")
        self.due_at = due_at


def retry_delay(attempt: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Seconds until a job whose ``attempt`` (1 for the first) failed is due again:
    ``min(cap, base * 2 ** (attempt - 1))``, of which a random 50-100 % (``rand()`` in
    ``[0, 1)``) is taken."""
    nominal = min(cap, base * 2.0 ** min(max(attempt, 1) - 1, 60))
    return nominal * (0.5 + 0.5 * rand())


def _nothing_leased() -> list[Job]:
    return []


class Pipeline:
    """Claim, apply, record jobs, commit, then run the jobs (see the module docstring).

    :param store: the ledger.
    :param kinds: the job kinds this pipeline can run; a job of another kind waits.
    :param lease: seconds a leased job is held for its worker; must exceed the longest run.
    :param retention_days: processed events (and done jobs) older than this are pruned.
    :param retry_base: seconds before a failed job's first retry (doubled per failure);
        default :data:`DEFAULT_RETRY_BASE`.
    :param retry_cap: the longest wait between two attempts of a failed job; default
        :data:`DEFAULT_RETRY_CAP`.
    """

    def __init__(
        self,
        store: Ledger,
        kinds: Iterable[JobKind] = (),
        *,
        lease: float = DEFAULT_LEASE,
        retention_days: float = DEFAULT_RETENTION_DAYS,
        retry_base: float | None = None,
        retry_cap: float | None = None,
    ) -> None:
        # Values, not option text: the settings converted and checked them (job_lease,
        # event_retention_days); a direct caller gets a plain error for a nonsense value.
        if not (lease > 0 and retention_days > 0):
            raise ValueError("lease and retention_days must be positive")
        retry_base = DEFAULT_RETRY_BASE if retry_base is None else retry_base
        retry_cap = DEFAULT_RETRY_CAP if retry_cap is None else retry_cap
        if not 0 < retry_base <= retry_cap:
            raise ValueError("pipeline: retry_base must be more than 0 and at most retry_cap")
        self.store = store
        self.lease = float(lease)
        self.retention = float(retention_days) * 86400.0
        self.retry_base = float(retry_base)
        self.retry_cap = float(retry_cap)
        self._random = random.Random()  # noqa: S311  # jitter, not a secret
        self._heartbeat = _Heartbeat(store, self.lease)
        self._kinds: dict[str, JobKind] = {}
        for kind in kinds:
            self.add_kind(kind)
        self._prune_lock = threading.Lock()
        self._next_prune = 0.0

    def close(self) -> None:
        """End the heartbeat thread now rather than after its idle time (orderly shutdowns).

        Jobs still running keep their leases until they end; a job started later starts
        the thread again.
        """
        self._heartbeat.stop()

    def add_kind(self, kind: JobKind) -> None:
        """Let this pipeline run jobs of ``kind.kind`` (one runner per kind)."""
        self._kinds[kind.kind] = kind

    def process(
        self,
        apply: Callable[[StoreTransaction], Applied] | None,
        *,
        subject: str,
        event: EventClaim | None = None,
        known: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Run the pipeline once for ``subject``.

        :param apply: called in the transaction (after a successful claim) to change the
            ledger; returns the jobs now due. ``None`` only drives jobs already recorded.
        :param subject: whose due jobs are leased and run (a session id, or the event id).
        :param event: the event to claim; ``None`` for news that is not an event (a lookup).
        :param known: objects the job runners may use instead of reading the ledger.
        :raises StoreError: the transaction could not commit; nothing ran.
        :raises JobFailed: a job raised (logged); later jobs did not run.
        :raises JobsPending: a due job's completion could not be recorded, or (for a
            duplicate event or a call without one) a due job is held by another worker.
        :raises JobsScheduled: (for a duplicate event or a call without one) a job failed
            before and is not due again yet; nothing ran.
        """
        duplicate = False
        applied = Applied()
        with self.store.transaction() as tx:
            if event is not None and not tx.claim_event(
                event.event_id, event.event_type, event.session_id, jobs_of=subject
            ):
                duplicate = True
            elif apply is not None:
                applied = apply(tx)
            blocked: Blocked | None = None
            if duplicate or applied.jobs or event is None:
                leased, blocked = tx.lease_due(subject, self.lease, applied.jobs)
            else:
                leased = _nothing_leased  # a new event that made nothing due
        ran = self._run(leased(), {**(known or {}), **applied.known})
        if event is not None and not duplicate:
            self._maybe_prune()
        if blocked is not None and (duplicate or event is None):
            # A new event's own changes are committed and the holder (or the schedule) runs
            # the job; but a redelivery or a lookup may be that retry, so it must come back.
            if blocked.scheduled:
                raise JobsScheduled(subject, blocked.until)
            pending = JobsPending(f"a job of {subject} is held by another worker")
            pending.due_at = blocked.until
            raise pending
        return Outcome(duplicate, applied.value, ran)

    def _run(self, leased: Sequence[Job], known: Mapping[str, Any]) -> list[Job]:
        ran: list[Job] = []
        for index, job in enumerate(leased):
            runner = self._kinds.get(job.kind)
            if runner is None:
                self._release(leased[index:])
                raise JobsPending(f"no runner here for jobs of kind {job.kind!r}")
            try:
                with self._heartbeat.beating(job):
                    runner.run(job, known)
            except Exception as exc:
                delay = retry_delay(job.attempt, self.retry_base, self.retry_cap,
                                    self._random.random)
                logger.error("job %s %s (attempt %d) failed with %s; it will be retried in "
                             "%.0f s", job.kind, job.key, job.attempt, type(exc).__name__,
                             delay)
                self._release(leased[index + 1:], failed=job, retry_at=time.time() + delay)
                raise JobFailed(job, exc) from exc
            try:
                # Crash-safe: a done mark lost when the database crashed would run a job
                # whose side effect already happened again, after its lease.
                with self.store.transaction(durable=False, crash_safe=True) as tx:
                    # The subject's rows before the job's, the order the apply step takes
                    # them in, so the two transactions cannot deadlock.
                    runner.done(tx, job)
                    tx.finish(job)
            except StoreError as exc:
                logger.error("job %s %s (attempt %d) ran but could not be marked done; it will "
                             "run again as attempt %d after its lease", job.kind, job.key,
                             job.attempt, job.attempt + 1)
                self._release(leased[index + 1:])
                raise JobsPending("a job's completion could not be recorded") from exc
            ran.append(job)
        return ran

    def _release(self, jobs: Sequence[Job], *, failed: Job | None = None,
                 retry_at: float = 0.0) -> None:
        """Hand leases back early, best effort (if this fails the leases simply expire): the
        ``failed`` job's until its ``retry_at``, the never started ``jobs`` at once."""
        if not jobs and failed is None:
            return
        try:
            with self.store.transaction(durable=False) as tx:
                if failed is not None:
                    tx.retry_later(failed, retry_at)
                for job in jobs:
                    tx.release(job)
        except StoreError:
            pass  # already logged by the store; the leases expire on their own

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        with self._prune_lock:
            if now < self._next_prune:
                return
            self._next_prune = now + PRUNE_INTERVAL  # other threads skip meanwhile
        try:
            deleted = self.store.prune(time.time() - self.retention, PRUNE_BATCH)
        except StoreError:
            return  # logged by the store; the next interval tries again
        if deleted >= PRUNE_BATCH:
            with self._prune_lock:
                self._next_prune = 0.0  # more to delete: the next new event continues


class _Heartbeat:
    """Extends the leases of the jobs running in this process, every ``lease / 3`` seconds.

    One daemon thread per pipeline, started by the first job that runs (and again in a
    forked child); it ends :data:`HEARTBEAT_IDLE` seconds after the last job finished and
    the next job starts it again. A job that finishes within ``lease / 3`` is never
    written for.
    """

    def __init__(self, store: Ledger, lease: float) -> None:
        self.store = store
        self.lease = lease
        self.interval = lease / 3.0
        self._cond = threading.Condition()
        # Per running job (by a token of its own): the job and when it next beats.
        self._running: dict[int, tuple[Job, float]] = {}
        self._tokens = 0
        self._thread: threading.Thread | None = None
        self._pid = 0
        #: When the thread next wakes by itself: a job due later needs no wake-up call, so
        #: a job's start (due ``interval`` after it, later than any running job) costs no
        #: thread switch; only the last running job's end wakes the thread, to go idle.
        self._wakes_at = 0.0
        self._stopping = False  # set by stop(): the idle thread ends without waiting

    @contextlib.contextmanager
    def beating(self, job: Job) -> Iterator[None]:
        """Keep ``job``'s lease while the block runs."""
        with self._cond:
            self._tokens += 1
            token = self._tokens
            due = time.monotonic() + self.interval
            self._running[token] = (job, due)
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._wakes_at = due
                self._stopping = False
                self._thread = threading.Thread(target=self._beat, daemon=True,
                                                name="stripe-checkout-job-heartbeat")
                self._thread.start()
            elif due < self._wakes_at:
                self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                del self._running[token]
                if not self._running:
                    self._cond.notify()  # the last job ended: the idle clock starts now

    def stop(self) -> None:
        """Let an idle thread end at once instead of after :data:`HEARTBEAT_IDLE`."""
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def _beat(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [(token, job) for token, (job, at) in self._running.items() if at <= now]
                if not due:
                    if not self._running:
                        self._wakes_at = now + HEARTBEAT_IDLE
                        # Idle: end after HEARTBEAT_IDLE with no job started, or at once
                        # when stopped (a job's end notifying in between is not an end).
                        timed_out = self._stopping or not self._cond.wait(HEARTBEAT_IDLE)
                        if (timed_out or self._stopping) and not self._running:
                            self._thread = None  # the next job starts another
                            self._stopping = False
                            return
                        continue
                    self._wakes_at = min(at for _, at in self._running.values())
                    self._cond.wait(self._wakes_at - now)
                    continue
                for token, job in due:
                    self._running[token] = (job, now + self.interval)
            self._extend([job for _, job in due])

    def _extend(self, jobs: list[Job]) -> None:
        try:
            with self.store.transaction(durable=False) as tx:
                for job in jobs:
                    if not tx.extend_lease(job, time.time() + self.lease):
                        logger.warning("job %s %s (attempt %d) lost its lease while running",
                                       job.kind, job.key, job.attempt)
        except StoreError:
            pass  # logged by the store; the next beat tries again, well within the lease
