"""A member in headless Chromium subscribes, reads the members' page, cancels in the
billing portal, keeps access until the period ends, then loses it; another changes plans
from the account page: an upgrade after its preview, an upgrade whose payment fails, and a
downgrade at the period end.

The members' area example (``examples/members_area``) runs as the demo command starts it,
on the offline emulator; the emulator's clock moves the subscription past its period end.
Uses Debian's ``chromium`` and ``chromium-driver`` through Selenium, like test_browser.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_browser import (  # noqa: F401  # the shared browser fixtures
    CARD,
    browser_driver,
    chromium,
    wait_for,
)

from stripe_checkout_mw.cli.demo import DemoShop, find_middleware

pytestmark = pytest.mark.browser

DAY = 86400


@pytest.fixture
def members() -> Iterator[DemoShop]:
    with DemoShop("members", port=0, offline=True) as running:
        yield running


def test_a_member_subscribes_cancels_and_keeps_access_until_the_period_ends(
    browser_driver: Any, members: DemoShop  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    browser = browser_driver
    emu = members.emulator
    assert emu is not None
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


def subscribe(browser: Any, members: DemoShop, user: str, plan: str) -> None:
    """Sign in as ``user`` and pay for ``plan`` on the emulator's hosted page."""
    from selenium.webdriver.common.by import By

    emu = members.emulator
    assert emu is not None
    browser.get(members.url)
    browser.find_element(By.ID, "user").send_keys(user)
    browser.find_element(By.ID, "login").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, f"subscribe-{plan}"))
    browser.find_element(By.ID, f"subscribe-{plan}").click()
    wait_for(browser, lambda b: b.current_url.startswith(f"{emu.api_base}/pay/cs_test_"))
    browser.find_element(By.ID, "email").send_keys(f"{user}@example.com")
    browser.find_element(By.ID, "cardnumber").send_keys(CARD)
    browser.find_element(By.ID, "pay").click()
    wait_for(browser, lambda b: b.current_url == f"{members.url}account")


def choose(browser: Any, form: str, plan: str, seats: int) -> None:
    """Fill the account page's ``form`` (its id) with a plan and a seat count."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    element = browser.find_element(By.ID, form)
    Select(element.find_element(By.NAME, "plan")).select_by_value(plan)
    seats_field = element.find_element(By.NAME, "seats")
    seats_field.clear()
    seats_field.send_keys(str(seats))


def plan_shown(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.ID, "subscriptions").text)


def test_a_member_upgrades_fails_to_upgrade_and_downgrades_at_the_period_end(
    browser_driver: Any, members: DemoShop  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    browser = browser_driver
    emu = members.emulator
    middleware = find_middleware(members.app)
    assert emu is not None and middleware is not None
    subscribe(browser, members, "erin", "basic")
    emu.wait_for_deliveries(timeout=10)
    browser.get(f"{members.url}account")
    assert plan_shown(browser).startswith("Basic x 1: active, renews")
    assert "subscription_create" in browser.find_element(By.ID, "invoices").text
    browser.get(f"{members.url}reports")
    assert browser.find_element(By.ID, "denied").text == "Reports come with the Pro plan."

    # An upgrade: the preview says what is due now, Confirm pays it.
    browser.get(f"{members.url}account")
    choose(browser, "change-form", "pro", 1)
    browser.find_element(By.ID, "preview").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "due-now"))
    due = browser.find_element(By.ID, "due-now").text
    assert due.endswith(" USD") and 0 < float(due.split()[0]) <= 10.00
    assert browser.find_element(By.ID, "next-total").text == "15.00 USD"
    assert plan_shown(browser).startswith("Basic x 1")  # a preview changes nothing
    browser.find_element(By.ID, "confirm").click()
    wait_for(browser, lambda b: "notice=changed" in b.current_url)
    assert plan_shown(browser).startswith("Pro x 1: active")
    emu.wait_for_deliveries(timeout=10)  # the invoice ledger learns from the webhooks
    browser.get(f"{members.url}account")
    history = browser.find_element(By.ID, "invoices").text
    assert "subscription_update" in history and due in history
    browser.get(f"{members.url}reports")
    assert "new members" in browser.find_element(By.ID, "report").text

    # The saved card now fails: more seats are not paid for, so nothing changes.
    customer = middleware.customers.stripe_id("erin") if middleware.customers else None
    assert customer is not None
    emu.attach_card(customer, "pm_card_chargeCustomerFail")
    browser.get(f"{members.url}account")
    choose(browser, "change-form", "pro", 3)
    browser.find_element(By.ID, "preview").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "confirm"))
    browser.find_element(By.ID, "confirm").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "error"))
    assert "did not go through" in browser.find_element(By.ID, "error").text
    assert "the plan is unchanged" in browser.find_element(By.ID, "error").text
    assert browser.find_element(By.ID, "pay").get_attribute("href").startswith(
        f"{emu.api_base}/")
    assert plan_shown(browser).startswith("Pro x 1: active")
    assert middleware.subscriptions is not None
    assert middleware.subscriptions.has_feature("erin", "reports")

    # A downgrade at the period end: Pro until then, Basic after.
    emu.attach_card(customer, CARD)
    browser.get(f"{members.url}account")
    choose(browser, "schedule-form", "basic", 1)
    browser.find_element(By.ID, "schedule").click()
    wait_for(browser, lambda b: "notice=scheduled" in b.current_url)
    assert plan_shown(browser).startswith("Pro x 1: active")
    # The page knows a change is due (the ledger keeps the schedule), and offers to
    # call it off rather than to schedule another.
    assert plan_shown(browser).endswith("your plan changes then (scheduled)")
    assert browser.find_elements(By.ID, "unschedule")
    assert not browser.find_elements(By.ID, "schedule")
    emu.advance_clock(27 * DAY)
    browser.get(f"{members.url}reports")
    assert browser.find_elements(By.ID, "report")
    emu.advance_clock(5 * DAY)  # past the end of the first month
    browser.get(f"{members.url}account")
    wait_for(browser, lambda b: plan_shown(b).startswith("Basic x 1: active, renews"))
    emu.wait_for_deliveries(timeout=10)
    browser.get(f"{members.url}account")
    assert "subscription_cycle" in browser.find_element(By.ID, "invoices").text
    browser.get(f"{members.url}reports")
    assert browser.find_element(By.ID, "denied").text == "Reports come with the Pro plan."
    browser.get(f"{members.url}members")
    assert browser.find_elements(By.ID, "secret")
