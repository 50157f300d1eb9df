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
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from .store import Job, Ledger, NewJob, StoreError, StoreTransaction

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_RETENTION_DAYS",
    "Applied",
    "EventClaim",
    "JobFailed",
    "JobKind",
    "JobsPending",
    "Outcome",
    "Pipeline",
]

logger = logging.getLogger("stripe_checkout_mw")

#: Seconds a job's lease lasts: longer than any ``fulfill`` may take.
DEFAULT_LEASE = 300.0
#: Days a processed event id is kept (Stripe retries a delivery for 3 days).
DEFAULT_RETENTION_DAYS = 30.0
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
    """A job raised; its lease was released so the next delivery or lookup retries it."""

    def __init__(self, job: Job, cause: BaseException) -> None:
        super().__init__(f"job {job.kind} {job.key} attempt {job.attempt} failed: "
                         f"{type(cause).__name__}")
        self.job = job
        self.cause = cause


class JobsPending(Exception):
    """Jobs of the subject are still due: another worker holds one, or a job's completion
    could not be recorded. Nothing is lost; the caller should answer "try again"."""


def _nothing_leased() -> list[Job]:
    return []


class Pipeline:
    """Claim, apply, record jobs, commit, then run the jobs (see the module docstring).

    :param store: the ledger.
    :param kinds: the job kinds this pipeline can run; a job of another kind waits.
    :param lease: seconds a leased job is held for its worker; must exceed the longest run.
    :param retention_days: processed events (and done jobs) older than this are pruned.
    """

    def __init__(
        self,
        store: Ledger,
        kinds: Iterable[JobKind] = (),
        *,
        lease: float = DEFAULT_LEASE,
        retention_days: float = DEFAULT_RETENTION_DAYS,
    ) -> None:
        # Values, not option text: the settings converted and checked them (job_lease,
        # event_retention_days); a direct caller gets a plain error for a nonsense value.
        if not (lease > 0 and retention_days > 0):
            raise ValueError("lease and retention_days must be positive")
        self.store = store
        self.lease = float(lease)
        self.retention = float(retention_days) * 86400.0
        self._kinds: dict[str, JobKind] = {}
        for kind in kinds:
            self.add_kind(kind)
        self._prune_lock = threading.Lock()
        self._next_prune = 0.0

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
            if duplicate or applied.jobs or event is None:
                leased, held = tx.lease_due(subject, self.lease, applied.jobs)
            else:
                leased, held = _nothing_leased, False  # a new event that made nothing due
        ran = self._run(leased(), {**(known or {}), **applied.known})
        if event is not None and not duplicate:
            self._maybe_prune()
        if held and (duplicate or event is None):
            # A new event's own changes are committed and the holder (or its retry) runs the
            # job; but a redelivery or a lookup may be that retry, so it must come back.
            raise JobsPending(f"a job of {subject} is held by another worker")
        return Outcome(duplicate, applied.value, ran)

    def _run(self, leased: Sequence[Job], known: Mapping[str, Any]) -> list[Job]:
        ran: list[Job] = []
        for index, job in enumerate(leased):
            runner = self._kinds.get(job.kind)
            if runner is None:
                self._release(leased[index:], ran=False)
                raise JobsPending(f"no runner here for jobs of kind {job.kind!r}")
            try:
                runner.run(job, known)
            except Exception as exc:
                logger.error("job %s %s (attempt %d) failed with %s; it will be retried",
                             job.kind, job.key, job.attempt, type(exc).__name__)
                self._release([job], ran=True)
                self._release(leased[index + 1:], ran=False)
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
                self._release(leased[index + 1:], ran=False)
                raise JobsPending("a job's completion could not be recorded") from exc
            ran.append(job)
        return ran

    def _release(self, jobs: Sequence[Job], *, ran: bool) -> None:
        """Hand leases back early, best effort (if this fails the leases simply expire)."""
        if not jobs:
            return
        try:
            with self.store.transaction(durable=False) as tx:
                for job in jobs:
                    tx.release(job, ran=ran)
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
