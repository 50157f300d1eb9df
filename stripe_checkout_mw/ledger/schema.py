"""The ledger's tables, declared once for both engines, and the schema version.

Each table is one :class:`Table`: its columns (name, portable type, constraints), its
composite keys and its indexes. The DDL of an engine is made from these declarations and a
small type map (:data:`SQLITE_TYPES`, :data:`POSTGRES_TYPES`), so SQLite and PostgreSQL can
never disagree on a table's shape.

Adding a column is one edit: add a :class:`Column` to its table here and bump
:data:`SCHEMA_VERSION`. A ledger written by an older version is upgraded on first use: the
missing tables and indexes are created and the missing columns added (``ALTER TABLE ... ADD
COLUMN``), so a new column must allow ``NULL`` or have a ``default``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "Column",
    "Index",
    "Table",
    "column_names",
    "create_statements",
    "table",
]

#: Bumped whenever the tables change; a store refuses a ledger written by a newer version.
#: Version 2 added ``stripe_checkout_jobs`` and the events' ``processed_at`` index; version 3
#: the billing tables ``stripe_checkout_customers`` and ``stripe_checkout_subscriptions``;
#: version 4 ``stripe_checkout_payments`` (refunds and disputes). Each upgrade only added, so
#: upgrading an older ledger is creating what is missing. Version 5 added the jobs'
#: ``retry_at`` (when a failed job is due again), the subscriptions' ``sold_here`` (rows
#: stored before it count as sold here, as they did), ``stripe_checkout_grants`` (features
#: granted by hand), ``stripe_checkout_invoices`` (the invoice ledger) and
#: ``stripe_checkout_backfill`` (the full sync's cursors). Version 6 added the
#: subscriptions' ``status_since`` (when the ledger first stored the current status, for
#: the grace periods; rows stored before it count from their ``updated_at``) and the
#: invoices' ``amount_refunded``.
SCHEMA_VERSION = 6

# Portable column types, mapped to each engine's own by the type maps below.
TEXT = "text"
INTEGER = "integer"
BIGINT = "bigint"
REAL = "real"
BOOLEAN = "boolean"
JSON = "json"
#: An integer key the database numbers itself (the table's primary key).
SERIAL = "serial"

#: SQLite's names for the portable types (JSON as text, booleans as 0/1).
SQLITE_TYPES: Mapping[str, str] = {
    TEXT: "TEXT", INTEGER: "INTEGER", BIGINT: "INTEGER", REAL: "REAL", BOOLEAN: "INTEGER",
    JSON: "TEXT", SERIAL: "INTEGER PRIMARY KEY AUTOINCREMENT",
}
#: PostgreSQL's names for the portable types.
POSTGRES_TYPES: Mapping[str, str] = {
    TEXT: "text", INTEGER: "integer", BIGINT: "bigint", REAL: "double precision",
    BOOLEAN: "boolean", JSON: "jsonb", SERIAL: "bigserial PRIMARY KEY",
}


@dataclass(frozen=True)
class Column:
    """One column: ``key`` makes it the primary key; ``default`` is ``0`` or ``False``."""

    name: str
    type: str
    null: bool = True
    key: bool = False
    unique: bool = False
    default: bool | int | None = None

    def ddl(self, types: Mapping[str, str]) -> str:
        parts = [self.name, types[self.type]]
        if self.key:
            parts.append("PRIMARY KEY")
        if self.unique:
            parts.append("UNIQUE")
        if not self.null:
            parts.append("NOT NULL")
        if self.default is not None:
            parts.append(f"DEFAULT {_literal(self.default, types)}")
        return " ".join(parts)


@dataclass(frozen=True)
class Index:
    """An index on ``columns``; ``where`` makes it partial (both engines take the same text)."""

    name: str
    columns: tuple[str, ...]
    where: str | None = None


@dataclass(frozen=True)
class Table:
    """A table: its columns in order, composite unique keys and indexes."""

    name: str
    columns: tuple[Column, ...]
    unique: tuple[tuple[str, ...], ...] = ()
    indexes: tuple[Index, ...] = ()

    def create(self, types: Mapping[str, str]) -> Iterator[str]:
        """``CREATE TABLE IF NOT EXISTS`` and its indexes, in the engine's types."""
        lines = [column.ddl(types) for column in self.columns]
        lines += [f"UNIQUE ({', '.join(columns)})" for columns in self.unique]
        yield (f"CREATE TABLE IF NOT EXISTS {self.name} (\n    "
               + ",\n    ".join(lines) + "\n)")
        for index in self.indexes:
            where = f" WHERE {index.where}" if index.where else ""
            yield (f"CREATE INDEX IF NOT EXISTS {index.name} "
                   f"ON {self.name} ({', '.join(index.columns)}){where}")

    def add_column(self, column: Column, types: Mapping[str, str]) -> str:
        """The ``ALTER TABLE`` that adds ``column`` to a table created before it existed."""
        return f"ALTER TABLE {self.name} ADD COLUMN {column.ddl(types)}"


def _literal(value: bool | int, types: Mapping[str, str]) -> str:
    if isinstance(value, bool) and types[BOOLEAN] == "boolean":
        return "true" if value else "false"
    return str(int(value))


TABLES: tuple[Table, ...] = (
    Table("stripe_checkout_meta", (
        Column("key", TEXT, key=True),
        Column("value", TEXT, null=False),
    )),
    # One row per Checkout Session this shop created (ledger.orders.Order).
    Table("stripe_checkout_orders", (
        Column("session_id", TEXT, key=True),
        Column("status", TEXT, null=False),
        Column("payment_status", TEXT),
        Column("mode", TEXT),
        Column("currency", TEXT),
        Column("amount_subtotal", BIGINT),
        Column("amount_total", BIGINT),
        Column("customer_email", TEXT),
        Column("client_reference_id", TEXT),
        Column("metadata", JSON, null=False),
        Column("items", JSON, null=False),
        Column("session", JSON),
        Column("fulfilled", BOOLEAN, null=False, default=False),
        Column("created_at", REAL, null=False),
        Column("updated_at", REAL, null=False),
        Column("fulfilled_at", REAL),
    )),
    # One row per Stripe event claimed (processed), pruned after the retention period.
    Table("stripe_checkout_events", (
        Column("event_id", TEXT, key=True),
        Column("event_type", TEXT, null=False),
        Column("session_id", TEXT),
        Column("processed_at", REAL, null=False),
    ), indexes=(
        Index("stripe_checkout_events_processed", ("processed_at",)),
    )),
    # One row per side effect that became due (ledger.store.Job).
    Table("stripe_checkout_jobs", (
        Column("seq", SERIAL),
        Column("kind", TEXT, null=False),
        Column("job_key", TEXT, null=False),
        Column("subject", TEXT, null=False),
        Column("payload", JSON, null=False),
        Column("attempt", INTEGER, null=False),
        Column("lease_until", REAL, null=False),
        Column("done_at", REAL),
        Column("created_at", REAL, null=False),
        # When a job whose last attempt failed is due again (its backoff); 0: due now.
        Column("retry_at", REAL, null=False, default=0),
    ), unique=(("kind", "job_key"),), indexes=(
        Index("stripe_checkout_jobs_pending", ("subject", "seq"), "done_at IS NULL"),
        Index("stripe_checkout_jobs_done", ("done_at",), "done_at IS NOT NULL"),
    )),
    # The app's user (ref) of each Stripe Customer (billing.customers).
    Table("stripe_checkout_customers", (
        Column("stripe_customer", TEXT, key=True),
        Column("customer_ref", TEXT, null=False),
        Column("created_at", REAL, null=False),
    ), indexes=(
        Index("stripe_checkout_customers_ref", ("customer_ref", "created_at")),
    )),
    # Each subscription as Stripe last said (billing.subscriptions).
    Table("stripe_checkout_subscriptions", (
        Column("subscription_id", TEXT, key=True),
        Column("stripe_customer", TEXT, null=False),
        Column("customer_ref", TEXT),
        Column("status", TEXT, null=False),
        Column("record", JSON, null=False),
        Column("prices", JSON, null=False),
        Column("revision", INTEGER, null=False),
        Column("fetched_at", REAL, null=False),
        Column("created", REAL, null=False),
        Column("updated_at", REAL, null=False),
        # Whether the shop's checkout sold it (its marker) or it is of a configured price:
        # only those give entitlement (billing.entitlements).
        Column("sold_here", BOOLEAN, null=False, default=True),
        # When the ledger first stored the current status (Unix seconds): a past_due or
        # incomplete subscription gives access for its grace period from then
        # (billing.entitlements). NULL in rows stored before it: read as updated_at.
        Column("status_since", REAL),
    ), indexes=(
        Index("stripe_checkout_subscriptions_ref", ("customer_ref", "created")),
        Index("stripe_checkout_subscriptions_customer", ("stripe_customer",)),
    )),
    # A paid order's refunds and disputes (ledger.payments).
    Table("stripe_checkout_payments", (
        Column("session_id", TEXT, key=True),
        Column("payment_intent", TEXT, unique=True),
        Column("charge", TEXT),
        Column("amount_refunded", BIGINT, null=False, default=0),
        Column("refunds", JSON, null=False),
        Column("disputes", JSON, null=False),
        Column("dispute_status", TEXT),
        Column("updated_at", REAL, null=False),
    ), indexes=(
        Index("stripe_checkout_payments_charge", ("charge",)),
    )),
    # Features granted to a user by hand until a time (billing.entitlements).
    Table("stripe_checkout_grants", (
        Column("customer_ref", TEXT, null=False),
        Column("feature", TEXT, null=False),
        Column("expires_at", REAL, null=False),
        Column("note", TEXT),
        Column("granted_at", REAL, null=False),
    ), unique=(("customer_ref", "feature"),)),
    # Each invoice of the shop's customers as Stripe last said (ledger.invoices): a column
    # per field, so a billing-history page decodes no JSON.
    Table("stripe_checkout_invoices", (
        Column("invoice_id", TEXT, key=True),
        Column("stripe_customer", TEXT, null=False),
        Column("subscription_id", TEXT),
        Column("status", TEXT, null=False),
        Column("created", BIGINT, null=False),
        Column("number", TEXT),
        Column("billing_reason", TEXT),
        Column("amount_due", BIGINT, null=False, default=0),
        Column("amount_paid", BIGINT, null=False, default=0),
        Column("amount_remaining", BIGINT, null=False, default=0),
        Column("total", BIGINT, null=False, default=0),
        Column("tax", BIGINT, null=False, default=0),
        Column("discounts", BIGINT, null=False, default=0),
        Column("currency", TEXT, null=False),
        Column("period_start", BIGINT),
        Column("period_end", BIGINT),
        Column("hosted_invoice_url", TEXT),
        Column("invoice_pdf", TEXT),
        Column("paid_at", BIGINT),
        Column("attempt_count", INTEGER, null=False, default=0),
        Column("next_payment_attempt", BIGINT),
        # The largest cumulative refund of its payment seen (a charge's amount_refunded):
        # a late or repeated event never lowers it.
        Column("amount_refunded", BIGINT, null=False, default=0),
        Column("fetched_at", REAL, null=False),
        Column("updated_at", REAL, null=False),
    ), indexes=(
        Index("stripe_checkout_invoices_customer", ("stripe_customer", "created",
                                                     "invoice_id")),
    )),
    # Where each step of the full sync stopped: the last object applied (news.backfill).
    Table("stripe_checkout_backfill", (
        Column("step", TEXT, key=True),
        Column("last_id", TEXT),
        Column("updated_at", REAL, null=False),
    )),
)

_BY_NAME = {declared.name: declared for declared in TABLES}


def table(name: str) -> Table:
    """The declaration of the table ``name``."""
    return _BY_NAME[name]


def column_names(name: str) -> tuple[str, ...]:
    """The columns of the table ``name``, in their declared order."""
    return tuple(column.name for column in _BY_NAME[name].columns)


def create_statements(types: Mapping[str, str]) -> Iterator[str]:
    """Every ``CREATE TABLE``/``CREATE INDEX IF NOT EXISTS`` of the ledger, in order."""
    for declared in TABLES:
        yield from declared.create(types)
