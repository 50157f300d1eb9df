"""Two shops on one Stripe account at the same address, told apart by ``shop_id``.

Two developers run the example shop at the same URL against one Stripe test account: with
the marker derived from the URL, one's ``sync`` (or webhook, or success page) took the
other's paid sessions for its own. With different ``shop_id`` options each shop only ever
settles its own sessions; a shop that sets ``shop_id`` later still recognises the sessions
it marked before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RefundShop

from stripe_checkout_mw.marker import MARKER_KEY, shop_marker
from stripe_checkout_mw.testing import StripeEmulator

SUCCESS_URL = "https://shop.example.com/success?session_id={CHECKOUT_SESSION_ID}"


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=0) as emulator:
        yield emulator


def _shop(emu: StripeEmulator, folder: Path, name: str, shop_id: str | None) -> RefundShop:
    options = {"shop_id": shop_id} if shop_id is not None else {}
    return RefundShop(emu, f"sqlite:///{folder / (name + '.db')}", **options)


def _lose_row(shop: RefundShop, session_id: str) -> None:
    """The ledger row lost (a restore from an older backup): only the marker is left."""
    store = shop.middleware.store
    assert store is not None
    with store.transaction() as tx:
        store.dialect.execute(tx.conn, store.dialect.placeholders(
            "DELETE FROM stripe_checkout_orders WHERE session_id = ?"), (session_id,))


def _fulfilled(shop: RefundShop) -> list[str]:
    return [order.session_id for order in shop.hooks("fulfill")]


def test_two_shops_at_one_address_each_sync_only_their_own_sessions(
    emu: StripeEmulator, tmp_path: Path
) -> None:
    ann, bob = _shop(emu, tmp_path, "ann", "ann-laptop"), _shop(emu, tmp_path, "bob", "bob-laptop")
    try:
        emu.webhook_url = None  # both webhook endpoints down: sync is the only way in
        ann_session, bob_session = ann.buy(), bob.buy()
        assert emu.session(ann_session)["metadata"][MARKER_KEY] == "ann-laptop"
        assert emu.session(bob_session)["metadata"][MARKER_KEY] == "bob-laptop"
        for shop, session_id in ((ann, ann_session), (bob, bob_session)):
            _lose_row(shop, session_id)
            emu.pay(session_id)

        bob_report = bob.middleware.sync()
        assert _fulfilled(bob) == [bob_session]
        assert bob.middleware.store is not None
        assert bob.middleware.store.get(ann_session) is None
        assert bob_report.events_left >= 1  # ann's event: not claimed, not applied

        ann.middleware.sync()
        assert _fulfilled(ann) == [ann_session]
        assert ann.middleware.store is not None
        assert ann.middleware.store.get(bob_session) is None
    finally:
        ann.close()
        bob.close()


def test_a_shop_never_settles_another_shops_session_by_webhook_or_status_path(
    emu: StripeEmulator, tmp_path: Path
) -> None:
    ann, bob = _shop(emu, tmp_path, "ann", "ann-laptop"), _shop(emu, tmp_path, "bob", "bob-laptop")
    try:
        session_id = ann.buy()
        _lose_row(ann, session_id)
        emu.webhook_url = f"{bob.url}/stripe-webhook"  # ann's events reach bob's endpoint
        emu.pay(session_id)
        assert [d.status for d in emu.deliveries][-1] == 200
        assert _fulfilled(bob) == []
        assert bob.middleware.store is not None
        assert bob.middleware.store.get(session_id) is None
        answer = bob.http.get(f"{bob.url}/checkout-session",
                              params={"session_id": session_id}, timeout=10)
        assert answer.status_code == 404

        ann.middleware.sync()  # the event bob's endpoint refused to claim
        assert _fulfilled(ann) == [session_id]
        assert ann.status(session_id)["fulfilled"] is True
    finally:
        ann.close()
        bob.close()


def test_setting_shop_id_later_keeps_the_sessions_marked_before(
    emu: StripeEmulator, tmp_path: Path
) -> None:
    before = _shop(emu, tmp_path, "shop", None)
    try:
        old_session = before.buy()
        assert emu.session(old_session)["metadata"][MARKER_KEY] == shop_marker(SUCCESS_URL)
    finally:
        before.close()
    after = _shop(emu, tmp_path, "shop", "ann-laptop")  # the same ledger, now named
    try:
        emu.webhook_url = None
        _lose_row(after, old_session)
        emu.pay(old_session)
        after.middleware.sync()
        assert _fulfilled(after) == [old_session]
        assert emu.session(after.buy())["metadata"][MARKER_KEY] == "ann-laptop"
    finally:
        after.close()


def test_without_shop_id_two_shops_at_one_address_share_a_marker(
    emu: StripeEmulator, tmp_path: Path
) -> None:
    """Why ``check`` warns about the default marker on a loopback address with a test key."""
    ann, bob = _shop(emu, tmp_path, "ann", None), _shop(emu, tmp_path, "bob", None)
    try:
        assert ann.middleware.settings.marker == bob.middleware.settings.marker
    finally:
        ann.close()
        bob.close()
