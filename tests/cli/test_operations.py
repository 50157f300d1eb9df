"""The operator's command line over a ledger of a few hundred orders, run as a subprocess
(``python -m stripe_checkout_mw ...``), on SQLite and PostgreSQL, with the emulator for the
orders that really went through Stripe and for ``sync``."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from conftest import RefundShop

from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.ledger.schema import SCHEMA_VERSION, TABLES
from stripe_checkout_mw.ledger.store import open_store
from stripe_checkout_mw.testing import StripeEmulator

BULK = 300
HOOKS = '''
import os, time

def fulfill(order):
    time.sleep(float(os.environ.get("HOOK_DELAY", "0")))
    with open(os.environ["HOOK_LOG"], "a") as log:
        log.write(f"fulfill {order.session_id} {order.fulfilment_attempt}\\n")
'''


def fill(store_url: str, count: int = BULK) -> None:
    """``count`` orders an hour apart, newest first: every third paid and fulfilled."""
    now = time.time()
    with open_store(store_url) as store, store.transaction() as tx:
        for i in range(count):
            session_id = f"cs_test_bulk{i:04d}"
            paid = i % 3 == 0
            tx.insert_order(Order(
                session_id=session_id, status="paid" if paid else "open", mode="payment",
                currency="usd", amount_total=1000 + i, customer_email=f"c{i}@example.com",
                items=[{"name": "Mug", "quantity": 1, "unit_amount": 1000 + i,
                        "currency": "usd", "price": None}],
                session={"id": session_id, "expires_at": int(now) + 86400},
                fulfilled=paid, created_at=now - i * 3600 - 60, updated_at=now - i * 3600,
                fulfilled_at=now - i * 3600 if paid else None))


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=0) as emulator:
        yield emulator


@pytest.fixture
def hooks(tmp_path: Path) -> Path:
    (tmp_path / "shop_hooks.py").write_text(HOOKS)
    return tmp_path / "hooks.log"


@pytest.fixture
def cli(emu: StripeEmulator, store_url: str, hooks: Path, tmp_path: Path) -> Cli:
    return Cli(emu, store_url, hooks, tmp_path)


class Cli:
    """Runs the command line as a subprocess against one ledger and one emulator."""

    def __init__(self, emu: StripeEmulator, store_url: str, hooks: Path, folder: Path) -> None:
        self.emu = emu
        self.store_url = store_url
        self.hooks = hooks
        self.env = {
            "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(folder),
            "STRIPE_SECRET_KEY": emu.secret_key, "STRIPE_API_BASE": emu.api_base,
            "HOOK_LOG": str(hooks),
        }

    def start(self, *args: str, store: bool = True, **env: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "stripe_checkout_mw", *args]
        if store:
            argv += ["--store", self.store_url]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**self.env, **env})

    def __call__(self, *args: str, store: bool = True,
                 **env: str) -> subprocess.CompletedProcess[str]:
        process = self.start(*args, store=store, **env)
        out, err = process.communicate(timeout=120)
        answer = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        for text in (out, err):
            assert self.emu.secret_key not in text and "Traceback" not in text
        return answer

    def fulfilled(self) -> Counter[str]:
        if not self.hooks.exists():
            return Counter()
        return Counter(line.split()[1] for line in self.hooks.read_text().splitlines())


@pytest.fixture
def shop(emu: StripeEmulator, store_url: str) -> Iterator[RefundShop]:
    server = RefundShop(emu, store_url)
    yield server
    server.close()


def test_orders_list_filters_and_formats_a_ledger_of_a_few_hundred_orders(
    cli: Cli, shop: RefundShop
) -> None:
    fill(cli.store_url)
    refunded = shop.buy()
    cli.emu.pay(refunded)
    cli.emu.refund(refunded, amount=500)

    table = cli("orders", "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["CREATED", "(UTC)", "SESSION", "STATUS", "TOTAL", "REFUNDED",
                                "FULFILLED", "EMAIL"]
    assert len(lines) == 1 + 100 + 1 and lines[-1].startswith("100 order(s) (the newest")
    assert refunded in lines[1] and "partially_refunded" in lines[1] and "5.00 usd" in lines[1]

    everything = json.loads(cli("orders", "list", "--limit", "1000", "--json").stdout)
    assert len(everything) == BULK + 1
    week = json.loads(cli("orders", "list", "--since", "7d", "--limit", "1000",
                          "--json").stdout)
    assert len(week) == 1 + 7 * 24  # one an hour, and the real one
    paid = json.loads(cli("orders", "list", "--status", "paid", "--limit", "1000",
                          "--json").stdout)
    assert len(paid) == BULK // 3 and {o["status"] for o in paid} == {"paid"}
    mine = json.loads(cli("orders", "list", "--email", "C7@example.com", "--json").stdout)
    assert [o["session_id"] for o in mine] == ["cs_test_bulk0007"]
    assert mine[0]["amount_total"] == 1007 and mine[0]["fulfilled"] is False

    bad = cli("orders", "list", "--since", "7 days")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "--since" in bad.stderr
    negative = cli("orders", "list", "--limit", "-1")
    assert negative.returncode == 2 and "is not a count" in negative.stderr
    wrong = cli("orders", "list", "--status", "shipped")
    assert wrong.returncode == 2 and "--status" in wrong.stderr


def test_orders_show_has_items_history_refunds_disputes_and_attempts(
    cli: Cli, shop: RefundShop
) -> None:
    fill(cli.store_url)
    session_id = shop.buy(quantity=2)
    cli.emu.pay(session_id)
    refund = cli.emu.refund(session_id, amount=1000)
    dispute = cli.emu.dispute(session_id)

    shown = cli("orders", "show", session_id)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "Status:       partially_refunded" in text and "ann@example.com" in text
    assert "Total:        40.00 usd, refunded 10.00 usd" in text
    assert "Dispute:      disputed" in text
    assert "T-shirt" in text and refund["id"] in text and dispute["id"] in text
    for event_type in ("checkout.session.completed", "refund.created", "charge.refunded",
                       "charge.dispute.created"):
        assert event_type in text
    data = json.loads(cli("orders", "show", session_id, "--json").stdout)
    assert data["amount_refunded"] == 1000 and data["dispute"] == "disputed"
    assert data["refunds"][0]["id"] == refund["id"]
    first_job = data["jobs"][0]
    assert (first_job["kind"], first_job["attempts"], first_job["state"]) == ("fulfil", 1, "done")
    assert data["history"][0]["event"] == "checkout.session.completed"

    missing = cli("orders", "show", "cs_test_nosuchorder")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [
        f"orders: no order cs_test_nosuchorder in {open_store(cli.store_url).url}"]
    malformed = cli("orders", "show", "pi_123")
    assert malformed.returncode == 2 and len(malformed.stderr.strip().splitlines()) == 1


def test_events_list_and_fulfil_pending_drive_a_failed_fulfilment(
    cli: Cli, emu: StripeEmulator, store_url: str
) -> None:
    fill(store_url)
    failing = RefundShop(emu, store_url, fulfill=_always_fails)
    try:
        session_id = failing.buy()
        ok = failing.buy()
        emu.pay(session_id)
    finally:
        failing.close()

    events = cli("events", "list")
    assert events.returncode == 0 and "checkout.session.completed" in events.stdout
    assert "@example.com" not in events.stdout  # events are not about customers
    failed = json.loads(cli("events", "list", "--failed", "--json").stdout)
    assert [e["session_id"] for e in failed] == [session_id]
    assert failed[0]["attempts"] >= 1 and failed[0]["retry_at"] is not None
    shown = cli("events", "list", "--failed")
    assert "ATTEMPTS" in shown.stdout and "RETRY AT (UTC)" in shown.stdout
    typed = json.loads(cli("events", "list", "--type", "charge.refunded", "--json").stdout)
    assert typed == []

    refused = cli("fulfil-pending")
    assert refused.returncode == 2 and "--fulfill" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    ran = cli("fulfil-pending", "--fulfill", "shop_hooks:fulfill")
    assert ran.returncode == 0, ran.stderr
    assert "jobs run: 1" in ran.stdout and "failures: 0" in ran.stdout
    assert cli.fulfilled() == {session_id: 1} and ok not in cli.fulfilled()
    again = cli("fulfil-pending", "--fulfill", "shop_hooks:fulfill", "--json")
    assert json.loads(again.stdout) == {"jobs_run": 0, "busy": 0, "failures": [], "ok": True,
                                        "waiting": []}
    assert json.loads(cli("events", "list", "--failed", "--json").stdout) == []


def _always_fails(order: Order) -> None:
    raise RuntimeError("warehouse offline")


@pytest.mark.slow  # two CLI processes racing a sync
def test_sync_from_the_command_line_and_from_two_hosts_at_once(
    cli: Cli, emu: StripeEmulator, shop: RefundShop
) -> None:
    fill(cli.store_url)
    emu.drop_webhooks(True)
    sessions = [shop.buy() for _ in range(3)]
    for session_id in sessions:
        emu.pay(session_id)
    emu.refund(sessions[0])

    processes = [cli.start("sync", "--since", "3d", "--fulfill", "shop_hooks:fulfill",
                           HOOK_DELAY="0.2") for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert cli.fulfilled() == dict.fromkeys(sessions, 1)
    assert shop.hooks("fulfill") == []  # the shop itself heard nothing
    first = outputs[0][0]
    assert "events since" in first and "6 seen" in first and "failures: 0" in first

    quiet = cli("sync", "--fulfill", "shop_hooks:fulfill", "--json")
    report = json.loads(quiet.stdout)
    assert quiet.returncode == 0 and report["events_seen"] == 6 and report["events_new"] == 0
    assert report["jobs_run"] == 0 and report["stripe_calls"] == 2  # two lists of types
    listed = json.loads(cli("orders", "list", "--status", "refunded", "--json").stdout)
    assert [o["session_id"] for o in listed] == [sessions[0]]

    clamped = cli("sync", "--since", "45d", "--no-fulfill")
    assert clamped.returncode == 0 and "limited to Stripe's 30 days" in clamped.stderr
    malformed = cli("sync", "--since", "3x", "--no-fulfill")
    assert malformed.returncode == 2 and malformed.stdout == ""
    assert len(malformed.stderr.strip().splitlines()) == 1 and "--since" in malformed.stderr
    keyless = cli("sync", "--no-fulfill", STRIPE_SECRET_KEY="")
    assert keyless.returncode == 2 and "secret_key" in keyless.stderr


def _tables(store_url: str) -> set[str]:
    """The tables at ``store_url``, looked at from outside the ledger (nothing is created)."""
    if store_url.startswith("sqlite:"):
        path = Path(store_url[len("sqlite:///"):])
        if not path.exists():
            return set()
        with closing(sqlite3.connect(path)) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {str(name) for (name,) in rows} - {"sqlite_sequence"}
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = current_schema()").fetchall()
    return {str(name) for (name,) in rows}


READ_ONLY_COMMANDS = [
    ("orders", "list"), ("orders", "list", "--json"), ("orders", "show", "cs_test_nosuchorder"),
    ("orders", "show", "cs_test_nosuchorder", "--json"), ("events", "list"),
    ("events", "list", "--failed", "--json"), ("subscriptions", "list"),
    ("subscriptions", "list", "--json"), ("subscriptions", "show", "user-1"),
    ("subscriptions", "show", "user-1", "--json"), ("grants", "list"),
    ("grants", "list", "user-1", "--json"),
]
WRITING_COMMANDS = [("fulfil-pending", "--no-fulfill"), ("sync", "--since", "1d", "--no-fulfill")]


@pytest.mark.parametrize("writing", WRITING_COMMANDS, ids=lambda argv: argv[0])
def test_every_command_on_a_store_that_does_not_exist_yet(
    cli: Cli, store_url: str, writing: tuple[str, ...]
) -> None:
    # A password in the URL is never printed (the test server trusts the user, so the
    # password is never asked for).
    url = store_url.replace("postgres@", "postgres:s3cret-pw@", 1)
    assert _tables(url) == set()
    # The commands that only read, once per store kind (they are the same before either).
    for argv in READ_ONLY_COMMANDS if writing[0] == "sync" else []:
        answer = cli(*argv, "--store", url, store=False)
        assert answer.returncode == 0, (argv, answer.stderr)
        said = answer.stderr if "--json" in argv else answer.stdout
        expected = f"no ledger yet at {open_store(url).url}; the app creates it on first use"
        assert expected in said, (argv, answer)
        assert "s3cret-pw" not in answer.stdout + answer.stderr
        if "--json" in argv:
            assert json.loads(answer.stdout) in ([], None)
        assert _tables(url) == set(), argv  # reading created nothing

    answer = cli(*writing, "--store", url, store=False)
    assert answer.returncode == 0, answer.stderr
    assert "s3cret-pw" not in answer.stdout + answer.stderr
    assert "failures: 0" in answer.stdout
    assert _tables(url) == {declared.name for declared in TABLES}
    with open_store(url) as store:
        assert store.stored_version() == str(SCHEMA_VERSION)

    listed = cli("orders", "list", "--json", "--store", url, store=False)
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
    assert "no ledger" not in listed.stderr


@pytest.mark.skipif(importlib.util.find_spec("psycopg_pool") is None, reason="needs psycopg")
def test_an_unreachable_store_stops_each_command_at_once_with_its_cause(
    emu: StripeEmulator, hooks: Path, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = Cli(emu, f"postgresql://shop@127.0.0.1:{port}/shop", hooks, tmp_path)
    listed = down("orders", "list")
    assert listed.returncode == 1 and "refused" in listed.stderr.lower()
    assert len(listed.stderr.strip().splitlines()) == 1
    started = time.monotonic()
    synced = down("sync", "--since", "1d", "--no-fulfill")
    elapsed = time.monotonic() - started
    # One line naming the cause, nothing tried after it (it was 9 StoreErrors in 91 s).
    assert synced.returncode == 1 and synced.stdout == ""
    cause = f"store postgresql://127.0.0.1:{port}/shop: cannot connect: connection refused"
    lines = synced.stderr.strip().splitlines()
    # At most the store's own log line, then the command's verdict; no pool retries.
    assert lines[-1] == f"sync: the ledger cannot be read: {cause}"
    assert len(lines) <= 2 and all(line.endswith(cause) for line in lines)
    assert elapsed < 30
