"""``subscriptions list|show`` and ``grants list|add|revoke`` run as a subprocess
(``python -m stripe_checkout_mw ...``) on SQLite and PostgreSQL, reading the features from
the shop's ``.ini`` file as the app reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import stripe

from stripe_checkout_mw.billing.customers import CustomerDirectory
from stripe_checkout_mw.billing.subscriptions import SubscriptionLedger
from stripe_checkout_mw.ledger.store import open_store
from stripe_checkout_mw.marker import MARKER_KEY
from stripe_checkout_mw.news.reads import Fetched
from stripe_checkout_mw.news.subscriptions import SubscriptionEvents

INI = """\
[filter:checkout]
use = egg:stripe-checkout-mw#checkout
store = {store}
price_lookup = lookup_keys
features =
    pro = reports api
    basic = reports
"""


def stripe_subscription(sub_id: str, customer: str, lookup_key: str,
                        **metadata: str) -> dict[str, Any]:
    return {"id": sub_id, "object": "subscription", "customer": customer, "status": "active",
            "created": 1_700_000_000, "cancel_at_period_end": False, "metadata": metadata,
            "items": {"data": [{"price": {"id": f"price_{lookup_key}",
                                          "lookup_key": lookup_key}, "quantity": 1,
                                "current_period_end": 1_800_000_000}]},
            "latest_invoice": {"id": "in_1", "status": "paid"}}


def fill(store_url: str) -> None:
    """ann bought ``pro`` through the shop; another integration sold bea ``basic``."""
    with open_store(store_url) as store:
        customers = CustomerDirectory(store)
        applier = SubscriptionEvents(SubscriptionLedger(store, customers),
                                     stripe.StripeClient("sk_test_unused"))
        with store.transaction() as tx:
            customers.record(tx, "ann", "cus_ann")
            customers.record(tx, "bea", "cus_bea")
            for sub in (stripe_subscription("sub_ann", "cus_ann", "pro",
                                            **{MARKER_KEY: "shop"}),
                        stripe_subscription("sub_bea", "cus_bea", "basic")):
                applier.apply(tx, sub["id"], {sub["id"]: Fetched(sub, 1.0)}, "evt_1")


class Cli:
    def __init__(self, ini: Path) -> None:
        self.ini = ini

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "")}
        answer = subprocess.run([sys.executable, "-m", "stripe_checkout_mw", *args,
                                 "--ini", str(self.ini)],
                                capture_output=True, text=True, env=env, timeout=120)
        assert "Traceback" not in answer.stdout + answer.stderr
        return answer

    def json(self, *args: str) -> Any:
        answer = self(*args, "--json")
        assert answer.returncode == 0, answer.stderr
        return json.loads(answer.stdout)


@pytest.fixture
def cli(store_url: str, tmp_path: Path) -> Cli:
    ini = tmp_path / "shop.ini"
    ini.write_text(INI.format(store=store_url.replace("%", "%%")))
    return Cli(ini)


def test_subscriptions_list_and_show_say_what_the_app_sees(cli: Cli, store_url: str) -> None:
    fill(store_url)
    listed = cli.json("subscriptions", "list")
    assert sorted((s["id"], s["customer_ref"], s["status"], s["sold_here"]) for s in listed) == [
        ("sub_ann", "ann", "active", True), ("sub_bea", "bea", "active", False)]
    ann = cli.json("subscriptions", "show", "ann")
    assert (ann["active"], ann["features"], ann["grants"]) == (True, ["api", "reports"], [])
    assert [s["items"] for s in ann["subscriptions"]] == [
        [{"price": "price_pro", "lookup_key": "pro", "quantity": 1}]]
    bea = cli.json("subscriptions", "show", "bea")
    assert (bea["active"], bea["features"]) == (False, [])
    table = cli("subscriptions", "list")
    assert table.returncode == 0
    assert "active (not sold here)" in table.stdout and "2 subscription(s)" in table.stdout
    shown = cli("subscriptions", "show", "ann")
    assert "features:  api reports" in shown.stdout and "sub_ann" in shown.stdout
    nobody = cli.json("subscriptions", "show", "nobody")
    assert (nobody["active"], nobody["subscriptions"]) == (False, [])


def test_grants_add_list_and_revoke(cli: Cli, store_url: str) -> None:
    fill(store_url)
    added = cli.json("grants", "add", "bea", "reports", "--until", "2099-12-31",
                     "--note", "comped: ticket 81")
    assert added == {"customer_ref": "bea", "feature": "reports",
                     "until": "2100-01-01T00:00:00+00:00", "granted_at": added["granted_at"],
                     "note": "comped: ticket 81"}
    assert cli("grants", "add", "ann", "support", "--until",
               "2099-06-01T12:00:00+02:00").returncode == 0
    bea = cli.json("subscriptions", "show", "bea")
    assert (bea["active"], bea["features"]) == (False, ["reports"])
    assert [(g["customer_ref"], g["feature"]) for g in cli.json("grants", "list")] == [
        ("ann", "support"), ("bea", "reports")]
    assert [g["until"] for g in cli.json("grants", "list", "ann")] == [
        "2099-06-01T10:00:00+00:00"]
    table = cli("grants", "list")
    assert "comped: ticket 81" in table.stdout and "2 grant(s)" in table.stdout

    revoked = cli("grants", "revoke", "bea", "reports")
    assert revoked.returncode == 0 and "revoked reports from bea" in revoked.stdout
    again = cli("grants", "revoke", "bea", "reports")
    assert again.returncode == 1 and "bea has no grant of reports" in again.stderr
    assert cli.json("subscriptions", "show", "bea")["features"] == []


@pytest.mark.parametrize(("until", "says"), [
    ("next tuesday", "--until 'next tuesday': write a date"),
    ("2001-01-01", "until must be in the future"),
])
def test_a_bad_grant_from_the_command_line_is_refused(
    cli: Cli, store_url: str, until: str, says: str
) -> None:
    fill(store_url)
    answer = cli("grants", "add", "ann", "reports", "--until", until)
    assert answer.returncode == 2 and says in answer.stderr
    assert cli.json("grants", "list") == []
