"""``sync`` from the command line for a shop configured through an ``.ini`` file: the
command builds the shop the way the middleware does, so it recognises the shop's own
sessions by their marker (whatever the ``ui_mode``), and an event it cannot apply is left
for a later run or Stripe's redelivery instead of being consumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ServedShop

from stripe_checkout_mw import CheckoutMiddleware
from stripe_checkout_mw.cli.check import read_ini
from stripe_checkout_mw.marker import MARKER_KEY
from stripe_checkout_mw.testing import StripeEmulator

HOOKS = '''
import os

def fulfill(order):
    with open(os.environ["HOOK_LOG"], "a") as log:
        log.write(f"fulfill {order.session_id} {order.fulfilment_attempt}\\n")
'''
CATALOG = {"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}}


def app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


class IniShop:
    """A shop configured by ``shop.ini`` (Embedded Checkout), served as the middleware the
    ``.ini`` builds, and the command line run on the same file."""

    def __init__(self, emu: StripeEmulator, store_url: str, folder: Path,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.emu = emu
        self.log = folder / "hooks.log"
        (folder / "shop_hooks.py").write_text(HOOKS)
        (folder / "catalog.json").write_text(json.dumps(CATALOG))
        self.ini = folder / "shop.ini"
        self.ini.write_text(
            "[filter:checkout]\n"
            "use = egg:stripe-checkout-mw#checkout\n"
            "ui_mode = embedded_page\n"
            "domain_url = https://shop.example.com\n"
            "publishable_key = pk_test_inishop\n"
            "catalog = catalog.json\n"
            f"store = {store_url.replace('%', '%%')}\n"
            "webhook_secret = env:STRIPE_WEBHOOK_SECRET\n"
            "fulfill = shop_hooks:fulfill\n")
        self.env = {
            "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(folder),
            "STRIPE_SECRET_KEY": emu.secret_key, "STRIPE_API_BASE": emu.api_base,
            "STRIPE_WEBHOOK_SECRET": emu.webhook_secret, "HOOK_LOG": str(self.log),
        }
        for name, value in self.env.items():
            if name != "PATH":
                monkeypatch.setenv(name, value)
        monkeypatch.syspath_prepend(str(folder))
        self.served = ServedShop(CheckoutMiddleware(app, **read_ini(self.ini)))
        emu.webhook_url = f"{self.served.url}/stripe-webhook"

    def buy_without_its_row(self) -> str:
        """A session the shop created, whose ledger row is then lost (a restore from an
        older backup), paid while the webhook endpoint was down."""
        session_id = self.served.buy()
        assert self.emu.session(session_id)["metadata"][MARKER_KEY]
        store = self.served.middleware.store
        assert store is not None
        with store.transaction() as tx:
            store.dialect.execute(tx.conn, store.dialect.placeholders(
                "DELETE FROM stripe_checkout_orders WHERE session_id = ?"), (session_id,))
        self.emu.drop_webhooks(True)
        self.emu.pay(session_id)
        self.emu.drop_webhooks(False)
        assert self.fulfilled() == Counter()
        return session_id

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        answer = subprocess.run([sys.executable, "-m", "stripe_checkout_mw", *args],
                                capture_output=True, text=True, env=self.env, timeout=120)
        for text in (answer.stdout, answer.stderr):
            assert self.emu.secret_key not in text and "Traceback" not in text
        return answer

    def fulfilled(self) -> Counter[str]:
        if not self.log.exists():
            return Counter()
        return Counter(line.split()[1] for line in self.log.read_text().splitlines())

    def close(self) -> None:
        self.served.close()


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=0) as emulator:
        yield emulator


@pytest.fixture
def shop(emu: StripeEmulator, store_url: str, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[IniShop]:
    server = IniShop(emu, store_url, tmp_path, monkeypatch)
    yield server
    server.close()


def test_sync_from_the_ini_recovers_an_embedded_shops_paid_session_without_its_row(
    shop: IniShop,
) -> None:
    session_id = shop.buy_without_its_row()

    synced = shop.cli("sync", "--since", "1d", "--ini", str(shop.ini), "--json")
    assert synced.returncode == 0, synced.stderr
    report = json.loads(synced.stdout)
    assert report["events_new"] == 1 and report["failures"] == []
    assert shop.fulfilled() == {session_id: 1}
    order = shop.served.middleware.store.get(session_id)  # type: ignore[union-attr]
    assert order is not None and order.status == "paid" and order.fulfilled

    again = shop.cli("sync", "--since", "1d", "--ini", str(shop.ini), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["events_new"] == 0
    assert shop.fulfilled() == {session_id: 1}


def test_an_event_a_sync_cannot_apply_to_a_marked_session_is_left_for_a_redelivery(
    emu: StripeEmulator, shop: IniShop
) -> None:
    session_id = shop.buy_without_its_row()

    # Run without the shop's configuration: the marker is unknown to this sync.
    blind = shop.cli("sync", "--since", "1d", "--store", shop.served.middleware.settings.store
                     or "", "--no-fulfill", "--json")
    assert blind.returncode == 0, blind.stderr
    assert json.loads(blind.stdout)["events_new"] == 0
    assert shop.fulfilled() == Counter()

    completed = [event["id"] for event in emu.events if event["type"] ==
                 "checkout.session.completed" and event["data"]["object"]["id"] == session_id]
    emu.redeliver(completed[0])
    assert shop.fulfilled() == {session_id: 1}


def test_an_event_a_sync_cannot_apply_is_recovered_by_a_later_sync(shop: IniShop) -> None:
    session_id = shop.buy_without_its_row()
    blind = shop.cli("sync", "--since", "1d", "--store", shop.served.middleware.settings.store
                     or "", "--no-fulfill")
    assert blind.returncode == 0, blind.stderr
    assert shop.fulfilled() == Counter()

    report = shop.served.middleware.sync()
    assert report.ok and report.events_new == 1
    assert shop.fulfilled() == {session_id: 1}
