"""A member in headless Chromium subscribes, reads the members' page, cancels in the
billing portal, keeps access until the period ends, then loses it.

The members' area example (``examples/members_area``) runs as the demo command starts it,
on the offline emulator; the emulator's clock moves the subscription past its period end.
Uses Debian's ``chromium`` and ``chromium-driver`` through Selenium, like test_browser.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_browser import CARD, driver, wait_for  # noqa: F401  # the shared browser fixture

from stripe_checkout_mw.cli.demo import DemoShop

pytestmark = pytest.mark.browser

DAY = 86400


@pytest.fixture
def members() -> Iterator[DemoShop]:
    with DemoShop("members", port=0, offline=True) as running:
        yield running


def test_a_member_subscribes_cancels_and_keeps_access_until_the_period_ends(
    driver: Any, members: DemoShop  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    browser = driver
    emu = members.emulator
    assert emu is not None
    try:
        browser.get(f"{members.url}members")
        assert browser.find_element(By.ID, "denied").text == "Subscribe to read this page."
        browser.get(members.url)
        browser.find_element(By.ID, "user").send_keys("dana")
        browser.find_element(By.ID, "login").click()
        wait_for(browser, lambda b: b.find_elements(By.ID, "subscribe-basic"))
        browser.find_element(By.ID, "subscribe-basic").click()
        wait_for(browser, lambda b: b.current_url.startswith(f"{emu.api_base}/pay/cs_test_"))
        browser.find_element(By.ID, "email").send_keys("dana@example.com")
        browser.find_element(By.ID, "cardnumber").send_keys(CARD)
        browser.find_element(By.ID, "pay").click()
        wait_for(browser, lambda b: b.current_url == f"{members.url}account")
        assert "active, renews" in browser.find_element(By.ID, "subscriptions").text

        browser.get(f"{members.url}members")
        assert "for members" in browser.find_element(By.ID, "secret").text

        browser.get(f"{members.url}account")
        browser.find_element(By.ID, "portal").click()
        wait_for(browser, lambda b: b.current_url.startswith(f"{emu.api_base}/portal/bps_"))
        browser.find_element(By.CSS_SELECTOR, "form.cancel button").click()
        wait_for(browser, lambda b: "notice=canceled" in b.current_url)
        browser.get(f"{members.url}account")
        wait_for(browser, lambda b: "active, ends" in b.find_element(By.ID, "subscriptions").text)
        browser.get(f"{members.url}members")
        assert browser.find_elements(By.ID, "secret")  # still a member until the period end

        emu.advance_clock(27 * DAY)
        browser.get(f"{members.url}members")
        assert browser.find_elements(By.ID, "secret")
        emu.advance_clock(5 * DAY)  # past the end of the first month
        browser.get(f"{members.url}members")
        assert browser.find_element(By.ID, "denied").text == "Subscribe to read this page."
        browser.get(f"{members.url}account")
        assert browser.find_element(By.ID, "subscriptions").text == "canceled"
    finally:
        browser.delete_all_cookies()
        browser.get("about:blank")
