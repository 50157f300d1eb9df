"""A customer in headless Chromium buys from the demo shop and pays on the emulator's page.

Uses Debian's ``chromium`` and ``chromium-driver`` through Selenium (no browser or driver
download). Where they are absent the test is skipped, unless
``STRIPE_CHECKOUT_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where that is a failure.
Everything runs on 127.0.0.1: the shop, the emulator and the browser's only traffic.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from stripe_checkout_mw.demo import DemoShop

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CARD = "4242 4242 4242 4242"
WAIT = 20  # seconds any one step may take


def _unavailable(reason: str) -> None:
    if os.environ.get("STRIPE_CHECKOUT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"STRIPE_CHECKOUT_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            _unavailable(f"{path} is not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("the selenium package is not installed (pip install selenium)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage", "--disable-extensions",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.set_page_load_timeout(WAIT)
        browser.set_script_timeout(WAIT)
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


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
def browser_driver(driver: Any) -> Iterator[Any]:
    """The shared browser, with no cookies or page left over from the previous test."""
    yield driver
    driver.delete_all_cookies()
    driver.get("about:blank")

