"""A customer in headless Chromium buys from the demo shop and pays on the emulator's page.

Uses Debian's ``chromium`` and ``chromium-driver`` through Selenium (no browser or driver
download). Where they are absent the test is skipped, unless
``STRIPE_CHECKOUT_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where that is a failure.
Everything runs on 127.0.0.1: the shop, the emulator and the browser's only traffic.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Fulfilments

from stripe_checkout_mw.cli.demo import DemoShop
from stripe_checkout_mw.serving import BackgroundServer
from stripe_checkout_mw.testing import StripeEmulator

#: One worker (``--dist loadgroup``) runs these, with one Chromium for the module.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CARD = "4242 4242 4242 4242"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WAIT = 20  # seconds any one step may take


def _unavailable(reason: str) -> None:
    if os.environ.get("STRIPE_CHECKOUT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"STRIPE_CHECKOUT_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


class Chromium:
    """The module's headless Chromium, started again when a test leaves it unresponsive.

    One browser serves every test of a module (starting one costs a second or two); a test
    whose page hangs its renderer fails, and :meth:`reset` then replaces the browser, so the
    tests after it do not fail for it too.
    """

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.current = self._start()

    def _start(self) -> Any:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--disable-quic",
                     "--disable-dev-shm-usage", "--disable-extensions",
                     f"--user-data-dir={self.profile}"):
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        browser.set_page_load_timeout(WAIT)
        browser.set_script_timeout(WAIT)
        return browser

    def reset(self) -> None:
        """No cookies or page left from the previous test; a new browser if it hung (a
        renderer that times out) or is gone (its driver's connection refused)."""
        try:
            self.current.delete_all_cookies()
            self.current.get("about:blank")
        except Exception:  # any of Selenium's or urllib3's: start afresh
            self.quit()
            self.current = self._start()

    def quit(self) -> None:
        with contextlib.suppress(Exception):  # a browser that hung may not answer quit
            self.current.quit()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            _unavailable(f"{path} is not installed (apt-get install chromium chromium-driver)")
    if importlib.util.find_spec("selenium") is None:
        _unavailable("the selenium package is not installed (pip install selenium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    browsers = Chromium(profile)
    try:
        yield browsers
    finally:
        browsers.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_a_browser_that_no_longer_answers_is_replaced_for_the_next_test(
        chromium: Chromium) -> None:
    gone = chromium.current
    gone.quit()  # no answer at all, as from a renderer that hung
    chromium.reset()
    assert chromium.current is not gone
    chromium.current.get("about:blank")
    assert chromium.current.current_url == "about:blank"


@pytest.fixture
def shop(request: pytest.FixtureRequest) -> Iterator[DemoShop]:
    framework = getattr(request, "param", "wsgi")
    with DemoShop(framework, port=0, offline=True) as running:
        yield running


def wait_for(browser: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT, poll_frequency=0.1).until(condition)


def click_buy(browser: Any, shop: DemoShop) -> str:
    """Open the shop and click the T-shirt's Buy button; return the hosted page's URL."""
    from selenium.webdriver.common.by import By

    assert shop.emulator is not None
    browser.get(shop.url)
    browser.find_element(By.ID, "buy-tee").click()
    pay_prefix = f"{shop.emulator.api_base}/pay/cs_test_"
    wait_for(browser, lambda b: b.current_url.startswith(pay_prefix))
    return str(browser.current_url)


@pytest.mark.parametrize("shop", ["wsgi", "bottle", "pyramid", "flask"], indirect=True)
def test_a_customer_pays_and_sees_the_fulfilled_order(browser_driver: Any, shop: DemoShop) -> None:
    from selenium.webdriver.common.by import By

    browser = browser_driver
    pay_url = click_buy(browser, shop)
    email = browser.find_element(By.ID, "email")
    email.clear()
    email.send_keys("dana@example.com")
    browser.find_element(By.ID, "cardnumber").send_keys(CARD)
    browser.find_element(By.ID, "pay").click()

    session_id = pay_url.rsplit("/", 1)[1]
    wait_for(browser, lambda b: b.current_url == f"{shop.url}success?session_id={session_id}")
    status = wait_for(
        browser,
        lambda b: (b.find_element(By.ID, "status").text == "Payment received, order fulfilled"
                   and b.find_element(By.ID, "status")),
    )
    assert status.text == "Payment received, order fulfilled"
    assert browser.find_element(By.ID, "items").text == "1 x T-shirt"
    assert shop.emulator is not None
    assert shop.emulator.session(session_id)["payment_status"] == "paid"


def test_a_customer_cancels(browser_driver: Any, shop: DemoShop) -> None:
    from selenium.webdriver.common.by import By

    browser = browser_driver
    pay_url = click_buy(browser, shop)
    browser.find_element(By.ID, "cancel").click()
    wait_for(browser, lambda b: b.current_url == f"{shop.url}cancel")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Payment cancelled"
    assert shop.emulator is not None
    session = shop.emulator.session(pay_url.rsplit("/", 1)[1])
    assert session["status"] == "open" and session["payment_status"] == "unpaid"


@pytest.fixture
def browser_driver(chromium: Chromium) -> Iterator[Any]:
    """The shared browser, with no cookies or page left over from the previous test."""
    yield chromium.current
    chromium.reset()



# -- the shop's own page: Embedded Checkout and Elements, on the emulator's Stripe.js --

DECLINED_CARD = "4000 0000 0000 0002"


class PageShop:
    """The embedded_shop example on a real server, against a started emulator."""

    def __init__(self, url: str, emulator: StripeEmulator, fulfilments: Fulfilments) -> None:
        self.url = url
        self.emulator = emulator
        self.fulfilments = fulfilments


@pytest.fixture
def page_shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PageShop]:
    """``embedded_shop`` in the ``ui_mode`` given as the fixture's param, or in
    ``(ui_mode, {more options})``."""
    ui_mode, more = request.param if isinstance(request.param, tuple) else (request.param, {})
    spec = importlib.util.spec_from_file_location("browser_embedded_shop",
                                                  EXAMPLES / "embedded_shop" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = BackgroundServer(port=0)
    fulfilments = Fulfilments()
    with StripeEmulator(f"{server.url}/stripe-webhook") as emulator:
        app = module.create_app(
            ui_mode=ui_mode, secret_key=emulator.secret_key,
            publishable_key=emulator.publishable_key, webhook_secret=emulator.webhook_secret,
            stripe_api_base=emulator.api_base, domain_url=server.url,
            store=f"sqlite:///{tmp_path / 'orders.db'}", fulfill=fulfilments,
            stripe_js_url=emulator.stripe_js_url, **more,
        )
        server.app = app
        server.start()
        try:
            yield PageShop(server.url + "/", emulator, fulfilments)
        finally:
            server.stop()
            app.close()


def open_page_shop(browser: Any, shop: PageShop, ui_mode: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(shop.url)
    wait_for(browser, lambda b: b.find_element(By.TAG_NAME, "body").get_attribute(
        "data-ready") == "1")
    assert browser.find_element(By.ID, "ui-mode").text == ui_mode
    email = browser.find_element(By.ID, "email")
    email.send_keys("erin@example.com")
    browser.find_element(By.ID, "buy-tee").click()


def pay_in_embedded_checkout(browser: Any, card: str) -> str:
    """Pay in the mounted Embedded Checkout's frame; return its session id.

    The browser is left inside the frame, so a decline's message can be read there.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    wait_for(browser, expected_conditions.frame_to_be_available_and_switch_to_it(
        (By.CSS_SELECTOR, "#checkout iframe")))
    wait_for(browser, lambda b: b.find_element(By.ID, "cardnumber"))
    assert browser.find_element(By.ID, "email").get_attribute("value") == "erin@example.com"
    session_id = str(browser.find_element(By.ID, "session-id").text)
    browser.find_element(By.ID, "cardnumber").send_keys(card)
    browser.find_element(By.ID, "pay").click()
    return session_id


def wait_for_fulfilled_order(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    wait_for(browser, lambda b: b.find_element(By.ID, "status").text
             == "Payment received, order fulfilled")
    assert browser.find_element(By.ID, "items").text == "1 x T-shirt"


@pytest.mark.parametrize("page_shop", ["embedded_page"], indirect=True)
def test_embedded_checkout_pays_and_returns_to_the_fulfilled_order(
        browser_driver: Any, page_shop: PageShop) -> None:
    browser = browser_driver
    open_page_shop(browser, page_shop, "embedded_page")
    session_id = pay_in_embedded_checkout(browser, CARD)
    browser.switch_to.default_content()

    # Stripe.js sends the shop's window (not the frame) to the configured return_url.
    wait_for(browser, lambda b: b.current_url
             == f"{page_shop.url}return?session_id={session_id}")
    wait_for_fulfilled_order(browser)
    session = page_shop.emulator.session(session_id)
    assert (session["ui_mode"], session["status"], session["payment_status"]) == (
        "embedded_page", "complete", "paid")
    assert session["url"] is None and session["success_url"] is None
    assert [order.session_id for order in page_shop.fulfilments.orders] == [session_id]


@pytest.mark.parametrize(
    "page_shop", [("embedded_page", {"redirect_on_completion": "if_required"})], indirect=True)
def test_embedded_checkout_without_redirect_calls_on_complete(
        browser_driver: Any, page_shop: PageShop) -> None:
    browser = browser_driver
    open_page_shop(browser, page_shop, "embedded_page")
    session_id = pay_in_embedded_checkout(browser, CARD)
    browser.switch_to.default_content()

    wait_for_fulfilled_order(browser)  # shown by the page's onComplete
    assert browser.current_url == page_shop.url
    assert page_shop.emulator.session(session_id)["payment_status"] == "paid"


@pytest.mark.parametrize("page_shop", ["embedded_page"], indirect=True)
def test_embedded_checkout_shows_a_decline_and_takes_no_payment(
        browser_driver: Any, page_shop: PageShop) -> None:
    from selenium.webdriver.common.by import By

    browser = browser_driver
    open_page_shop(browser, page_shop, "embedded_page")
    session_id = pay_in_embedded_checkout(browser, DECLINED_CARD)
    assert wait_for(browser, lambda b: b.find_element(By.ID, "error").text) == (
        "Your card was declined.")
    browser.switch_to.default_content()
    assert browser.current_url == page_shop.url  # the customer is still on the shop's page
    session = page_shop.emulator.session(session_id)
    assert (session["status"], session["payment_status"]) == ("open", "unpaid")
    assert page_shop.emulator.events == [] and page_shop.fulfilments.orders == []


def pay_with_payment_element(browser: Any, card: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    wait_for(browser, lambda b: b.find_element(By.ID, "payment").is_displayed())
    assert browser.find_element(By.ID, "total").text == "20.00 USD"
    wait_for(browser, expected_conditions.frame_to_be_available_and_switch_to_it(
        (By.CSS_SELECTOR, "#payment-element iframe")))
    try:
        wait_for(browser, lambda b: b.find_element(By.ID, "cardnumber")).send_keys(card)
    finally:
        browser.switch_to.default_content()
    browser.find_element(By.ID, "pay").click()


@pytest.mark.parametrize("page_shop", ["elements"], indirect=True)
def test_elements_pays_on_the_page_and_shows_the_fulfilled_order(
        browser_driver: Any, page_shop: PageShop) -> None:
    browser = browser_driver
    open_page_shop(browser, page_shop, "elements")
    pay_with_payment_element(browser, CARD)

    wait_for_fulfilled_order(browser)
    assert browser.current_url == page_shop.url  # paid without leaving the page
    (session,) = page_shop.emulator.sessions
    assert (session["ui_mode"], session["status"], session["payment_status"]) == (
        "elements", "complete", "paid")
    assert session["customer_details"]["email"] == "erin@example.com"
    assert [order.session_id for order in page_shop.fulfilments.orders] == [session["id"]]


@pytest.mark.parametrize("page_shop", ["elements"], indirect=True)
def test_elements_shows_a_decline_and_takes_no_payment(
        browser_driver: Any, page_shop: PageShop) -> None:
    from selenium.webdriver.common.by import By

    browser = browser_driver
    open_page_shop(browser, page_shop, "elements")
    pay_with_payment_element(browser, DECLINED_CARD)

    wait_for(browser, lambda b: b.find_element(By.ID, "error").text
             == "Your card was declined.")
    assert browser.find_element(By.ID, "pay").is_enabled()  # the customer may try again
    (session,) = page_shop.emulator.sessions
    assert (session["status"], session["payment_status"]) == ("open", "unpaid")
    assert page_shop.emulator.events == [] and page_shop.fulfilments.orders == []


@pytest.mark.parametrize("page_shop", ["embedded_page"], indirect=True)
def test_stand_in_stripe_js_refuses_what_stripe_js_refuses(
        browser_driver: Any, page_shop: PageShop) -> None:
    from selenium.webdriver.common.by import By

    browser = browser_driver
    browser.get(page_shop.url)
    wait_for(browser, lambda b: b.find_element(By.TAG_NAME, "body").get_attribute(
        "data-ready") == "1")
    errors = browser.execute_script("""
        function thrown(call) {
          try { call(); return null; } catch (e) {
            return [e.name, e instanceof Error, e.message];
          }
        }
        var stripe = Stripe(arguments[0]);
        return {
          foreign: thrown(function () { Stripe("pk_test_not_the_emulators"); }),
          secret: thrown(function () { Stripe("sk_test_123"); }),
          oldEmbedded: thrown(function () { stripe.initEmbeddedCheckout({}); }),
          oldElements: thrown(function () { stripe.initCheckout({}); }),
          noSecret: thrown(function () { stripe.initCheckoutElementsSdk({}); }),
          fetchSecret: thrown(function () {
            stripe.initCheckoutElementsSdk({fetchClientSecret: function () {}});
          }),
          synchronous: typeof stripe.initCheckoutElementsSdk({clientSecret: "x"}).then
        };
    """, page_shop.emulator.publishable_key)
    for name in ("foreign", "secret", "oldEmbedded", "oldElements", "noSecret",
                 "fetchSecret"):
        assert errors[name][:2] == ["IntegrationError", True], name
    assert "Invalid API Key" in errors["foreign"][2]
    assert "createEmbeddedCheckoutPage" in errors["oldEmbedded"][2]
    assert "initCheckoutElementsSdk" in errors["oldElements"][2]
    assert errors["synchronous"] == "undefined"  # a checkout, not a Promise of one
