"""The emulator's stand-in Stripe.js and the frames it mounts, over real HTTP.

What the script does in a browser is covered by tests/browser/test_browser.py; here are the
emulator's side of it: the sessions the two embedded modes create, the script's
address and key, and the frames' and calls' answers to good and bad input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import stripe

from stripe_checkout_mw.testing import StripeEmulator

RETURN = "http://shop.test/return?session_id={CHECKOUT_SESSION_ID}"
SHOP = "http://shop.test"


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=0) as emulator:
        yield emulator


def create(emu: StripeEmulator, ui_mode: str, **params: Any) -> stripe.checkout.Session:
    price = emu.add_price(2000, "usd")
    return emu.client().v1.checkout.sessions.create(params={
        "mode": "payment", "ui_mode": ui_mode,
        "line_items": [{"price": price["id"], "quantity": 1}], **params,
    })


def frame_query(emu: StripeEmulator, session: stripe.checkout.Session, **override: str) -> str:
    args = {"client_secret": session.client_secret, "key": emu.publishable_key,
            "origin": SHOP, **override}
    return urlencode(args)


@pytest.mark.parametrize("ui_mode", ["embedded_page", "elements"])
def test_embedded_modes_answer_a_client_secret_and_no_url(emu: StripeEmulator,
                                                         ui_mode: str) -> None:
    session = create(emu, ui_mode, return_url=RETURN)
    assert session.url is None
    assert re.fullmatch(rf"{session.id}_secret_[A-Za-z0-9]+", session.client_secret or "")
    assert session.return_url == RETURN
    assert session.redirect_on_completion == ("always" if ui_mode == "embedded_page" else None)


def test_hosted_page_has_a_url_and_no_client_secret(emu: StripeEmulator) -> None:
    session = create(emu, "hosted_page", success_url="http://shop.test/ok")
    assert session.url and session.client_secret is None
    assert session.return_url is None and session.redirect_on_completion is None


def test_redirect_on_completion_is_echoed(emu: StripeEmulator) -> None:
    session = create(emu, "embedded_page", redirect_on_completion="if_required")
    assert session.redirect_on_completion == "if_required"


@pytest.mark.parametrize(
    ("ui_mode", "params", "param"),
    [
        pytest.param("embedded_page", {"success_url": "http://shop.test/ok"}, "success_url",
                     id="success_url-embedded"),
        pytest.param("elements", {"cancel_url": "http://shop.test/no"}, "cancel_url",
                     id="cancel_url-elements"),
        pytest.param("hosted_page", {"return_url": RETURN}, "return_url",
                     id="return_url-hosted"),
        pytest.param("elements", {"redirect_on_completion": "never"},
                     "redirect_on_completion", id="redirect-elements"),
        pytest.param("embedded_page", {"redirect_on_completion": "sometimes"},
                     "redirect_on_completion", id="redirect-unknown"),
        pytest.param("embedded_page", {"return_url": "/return"}, "return_url",
                     id="return_url-relative"),
    ],
)
def test_parameters_of_the_wrong_mode_are_refused(
        emu: StripeEmulator, ui_mode: str, params: dict[str, str], param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        create(emu, ui_mode, **params)
    assert caught.value.error is not None and caught.value.error.param == param
    assert emu.sessions == []


def test_stripe_js_is_served_with_the_emulators_key(emu: StripeEmulator) -> None:
    assert emu.stripe_js_url == f"{emu.api_base}/v3/stripe.js"
    assert emu.publishable_key.startswith("pk_test_")
    answer = requests.get(emu.stripe_js_url, timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/javascript")
    config = json.dumps({"apiBase": emu.api_base, "publishableKey": emu.publishable_key})
    assert f"var CONFIG = {config};" in answer.text
    for name in ("createEmbeddedCheckoutPage", "initCheckoutElementsSdk",
                 "initEmbeddedCheckout", "initCheckout", "IntegrationError"):
        assert name in answer.text


def test_publishable_key_can_be_chosen_and_must_be_a_test_key() -> None:
    with StripeEmulator(publishable_key="pk_test_fixed") as emulator:
        assert emulator.publishable_key == "pk_test_fixed"
    with pytest.raises(ValueError, match="publishable_key"):
        StripeEmulator(publishable_key="pk_live_nope")


def test_embedded_frame_takes_the_hosted_pages_cards(emu: StripeEmulator) -> None:
    session = create(emu, "embedded_page", return_url=RETURN, customer_email="a@shop.test")
    url = f"{emu.api_base}/embedded/{session.id}?{frame_query(emu, session)}"
    form = requests.get(url, timeout=5)
    assert form.status_code == 200 and 'id="cardnumber"' in form.text
    assert 'id="cancel"' not in form.text  # no cancel_url in this mode

    declined = requests.post(url, data={"email": "a@shop.test",
                                        "cardnumber": "4000 0000 0000 0002"}, timeout=5)
    assert "Your card was declined." in declined.text
    assert emu.session(session.id)["status"] == "open" and emu.events == []

    paid = requests.post(url, data={"email": "a@shop.test",
                                    "cardnumber": "4242 4242 4242 4242"}, timeout=5)
    assert paid.status_code == 200
    message = re.search(r"parent\.postMessage\((.*), (\".*\")\);", paid.text)
    assert message is not None
    assert json.loads(message.group(2)) == SHOP
    assert json.loads(message.group(1)) == {
        "source": "stripe-emulator", "type": "embedded.complete", "sessionId": session.id,
        "redirectUrl": RETURN.replace("{CHECKOUT_SESSION_ID}", session.id)}
    assert emu.session(session.id)["payment_status"] == "paid"
    assert [e["type"] for e in emu.events] == ["checkout.session.completed"]


@pytest.mark.parametrize("redirect", ["if_required", "never"])
def test_embedded_completion_without_redirect_leaves_it_to_on_complete(
        emu: StripeEmulator, redirect: str) -> None:
    session = create(emu, "embedded_page", redirect_on_completion=redirect)
    url = f"{emu.api_base}/embedded/{session.id}?{frame_query(emu, session)}"
    paid = requests.post(url, data={"email": "a@shop.test", "delayed": "1"}, timeout=5)
    assert '"redirectUrl": null' in paid.text
    assert emu.session(session.id)["payment_status"] == "unpaid"  # delayed


@pytest.mark.parametrize(
    ("override", "status"),
    [
        pytest.param({"key": "pk_test_someone_else"}, 401, id="foreign-key"),
        pytest.param({"client_secret": "cs_test_x_secret_y"}, 404, id="wrong-secret"),
        pytest.param({"origin": "javascript:alert(1)"}, 400, id="bad-origin"),
        pytest.param({"origin": "http://shop.test/path"}, 400, id="origin-with-path"),
    ],
)
def test_embedded_frame_refuses_bad_arguments(emu: StripeEmulator, override: dict[str, str],
                                              status: int) -> None:
    session = create(emu, "embedded_page")
    url = f"{emu.api_base}/embedded/{session.id}?{frame_query(emu, session, **override)}"
    assert requests.get(url, timeout=5).status_code == status
    answer = requests.post(url, data={"email": "a@shop.test",
                                      "cardnumber": "4242424242424242"}, timeout=5)
    assert answer.status_code == status
    assert emu.session(session.id)["status"] == "open"


def test_frames_refuse_a_session_of_another_mode(emu: StripeEmulator) -> None:
    session = create(emu, "elements")
    url = f"{emu.api_base}/embedded/{session.id}?{frame_query(emu, session)}"
    assert requests.get(url, timeout=5).status_code == 400
    hosted = create(emu, "hosted_page")
    query = urlencode({"client_secret": "", "key": emu.publishable_key, "origin": SHOP})
    assert requests.get(f"{emu.api_base}/elements/{hosted.id}?{query}",
                        timeout=5).status_code == 404


def test_elements_session_and_confirm(emu: StripeEmulator) -> None:
    session = create(emu, "elements", return_url=RETURN)
    args = {"client_secret": session.client_secret, "key": emu.publishable_key}
    looked_up = requests.get(f"{emu.api_base}/elements/{session.id}/session",
                             params=args, timeout=5)
    assert looked_up.headers["Access-Control-Allow-Origin"] == "*"
    view = looked_up.json()
    assert view["status"] == {"type": "open", "paymentStatus": "unpaid"}
    assert view["total"]["total"] == {"minorUnitsAmount": 2000, "amount": "20.00 USD"}

    confirm = f"{emu.api_base}/elements/{session.id}/confirm"
    no_email = requests.post(confirm, data={**args, "cardnumber": "4242424242424242"},
                             timeout=5).json()
    assert no_email == {"type": "error", "error": {"message": "Enter a valid email address."}}
    declined = requests.post(confirm, data={**args, "email": "b@shop.test",
                                            "cardnumber": "4000000000000002"}, timeout=5)
    assert declined.json()["error"]["message"] == "Your card was declined."
    assert emu.session(session.id)["status"] == "open"

    paid = requests.post(confirm, data={**args, "email": "b@shop.test",
                                        "cardnumber": "4242 4242 4242 4242"}, timeout=5).json()
    assert paid["type"] == "success"
    assert paid["session"]["status"] == {"type": "complete", "paymentStatus": "paid"}
    assert paid["returnUrl"] == RETURN.replace("{CHECKOUT_SESSION_ID}", session.id)
    again = requests.post(confirm, data={**args, "email": "b@shop.test",
                                         "cardnumber": "4242 4242 4242 4242"}, timeout=5)
    assert again.json()["error"]["message"] == "This Checkout Session is already complete."
    assert [e["type"] for e in emu.events] == ["checkout.session.completed"]


def test_elements_calls_refuse_a_foreign_key(emu: StripeEmulator) -> None:
    session = create(emu, "elements")
    args = {"client_secret": session.client_secret, "key": "pk_test_not_the_emulators"}
    looked_up = requests.get(f"{emu.api_base}/elements/{session.id}/session", params=args,
                             timeout=5)
    assert looked_up.status_code == 401
    confirm = requests.post(f"{emu.api_base}/elements/{session.id}/confirm",
                            data={**args, "email": "b@shop.test",
                                  "cardnumber": "4242424242424242"}, timeout=5)
    assert confirm.status_code == 401 and confirm.json()["type"] == "error"
    assert emu.session(session.id)["status"] == "open"
