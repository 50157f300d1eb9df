"""The shop's webhook endpoint in the Stripe account: checked by ``check``, set up here.

A missing event type fails silently for months: Stripe sends nothing it was not asked for,
and the shop then never hears of a refund or a cancelled subscription. So the endpoint is
compared with what the middleware handles, in one place:

- its URL: ``{domain_url}{webhook_path}`` (a query string is ignored, as the middleware
  ignores it when matching the path);
- its event types: every type of :data:`stripe_checkout_mw.news.router.ROUTES`;
- its API version: the installed SDK's pin (``stripe.api_version``), in which the appliers
  read events. Stripe fixes an endpoint's version at creation: another version cannot be
  changed, only replaced by a second endpoint.

``python -m stripe_checkout_mw webhook-endpoint setup [--ini FILE] [--dry-run]`` creates the
endpoint, or updates the one found (enables it, adds the missing types), and prints a new
endpoint's signing secret once, with where to put it. For an endpoint at another API
version it creates a second one at the pinned version (its URL carries
``?api_version=...`` to tell the two apart) and prints the steps of the switch. It never
deletes an endpoint.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO, cast
from urllib.parse import urlsplit

import stripe
from stripe.params import WebhookEndpointCreateParams, WebhookEndpointUpdateParams

from ..news.router import event_types
from ..settings.options import configured
from ..settings.rules import Settings, load_settings
from ..shop import build_client
from ..urls import origin_of

__all__ = ["EndpointState", "endpoint_defects", "inspect", "pinned_version", "run_setup",
           "setup", "setup_settings", "shop_webhook_url", "wanted_types"]

#: Stands in for the signing secret when ``setup`` runs before there is one (the first
#: run, which makes it): the webhook path then takes its default.
_NO_SECRET_YET = "whsec_not_configured_yet"  # noqa: S105  # a placeholder, never used


def pinned_version() -> str:
    """The API version the installed SDK speaks, hence the one events must be rendered in."""
    return str(stripe.api_version)


def wanted_types() -> list[str]:
    """Every event type the middleware handles (the router's rows), sorted."""
    return sorted(event_types())


def shop_webhook_url(settings: Settings) -> str | None:
    """``{domain_url}{webhook_path}``, or None when the settings name no address."""
    if settings.webhook_path is None:
        return None
    base = settings.domain_url or origin_of(settings.success_url or settings.return_url or "")
    return f"{base.rstrip('/')}{settings.webhook_path}" if base else None


def _same_place(endpoint_url: str, url: str) -> bool:
    """Whether Stripe posting to ``endpoint_url`` reaches the shop's ``url``."""
    one, other = urlsplit(endpoint_url), urlsplit(url)
    return (one.scheme, one.netloc.lower(), one.path) == (other.scheme, other.netloc.lower(),
                                                         other.path)


@dataclass
class EndpointState:
    """What the account has at the shop's webhook URL, against what the middleware needs."""

    url: str
    version: str
    wanted: list[str]
    #: The endpoint the shop should use: the enabled one at the pinned version first.
    endpoint: Any = None
    #: Other endpoints at the URL (at another version, or duplicates).
    others: list[Any] = field(default_factory=list)

    @property
    def missing_types(self) -> list[str]:
        if self.endpoint is None:
            return list(self.wanted)
        enabled = set(self.endpoint.enabled_events or ())
        return [] if "*" in enabled else [t for t in self.wanted if t not in enabled]

    @property
    def disabled(self) -> bool:
        return self.endpoint is not None and self.endpoint.status != "enabled"

    @property
    def other_version(self) -> str | None:
        """The endpoint's API version when it is not the pin (``account default`` if unset)."""
        if self.endpoint is None or self.endpoint.api_version == self.version:
            return None
        return str(self.endpoint.api_version or "the account's default")

    def defects(self) -> list[str]:
        """One phrase per problem; empty when the endpoint is what the middleware needs."""
        if self.endpoint is None:
            return [f"no endpoint at {self.url}: Stripe sends this shop no events"]
        found: list[str] = []
        if self.disabled:
            found.append(f"{self.endpoint.id} is disabled: Stripe sends it nothing and will "
                         "not resend what it missed")
        if self.missing_types:
            found.append(f"{self.endpoint.id} lacks {len(self.missing_types)} handled event "
                         f"type(s): {', '.join(self.missing_types)}")
        if self.other_version is not None:
            found.append(f"{self.endpoint.id} renders events in API version "
                         f"{self.other_version}, not the SDK's {self.version}")
        return found


def inspect(client: stripe.StripeClient, url: str) -> EndpointState:
    """List the account's endpoints (every page) and pick the one at ``url``."""
    state = EndpointState(url=url, version=pinned_version(), wanted=wanted_types())
    listed = client.v1.webhook_endpoints.list(params={"limit": 100})
    here = [e for e in listed.auto_paging_iter() if _same_place(str(e.url), url)]
    here.sort(key=lambda e: (e.api_version != state.version, e.status != "enabled",
                             -int(e.created or 0)))
    if here:
        state.endpoint, state.others = here[0], here[1:]
    return state


def _describe_others(state: EndpointState) -> list[str]:
    return [f"{e.id} ({e.status}, API version {e.api_version or 'account default'}) is also "
            f"at {state.url}; delete it once {state.endpoint.id} receives events"
            for e in state.others if e.status == "enabled"]


def _new_endpoint_params(state: EndpointState, url: str) -> WebhookEndpointCreateParams:
    # The pin is a version the SDK lists, but typed as a plain str.
    return cast(WebhookEndpointCreateParams, {
        "url": url, "enabled_events": state.wanted, "api_version": state.version,
        "description": "stripe-checkout-mw"})


def _switch_steps(old: Any, new_id: str, version: str) -> str:
    return (
        f"Switching API versions ({old.api_version or 'account default'} -> {version}):\n"
        f"  1. Add the new secret beside the current one: webhook_secret = whsec_NEW "
        f"whsec_CURRENT\n"
        f"     (or STRIPE_WEBHOOK_SECRET=\"whsec_NEW whsec_CURRENT\"), and deploy. Until "
        f"then Stripe retries its deliveries to {new_id}.\n"
        f"  2. Both endpoints now deliver each event; the ledger applies each event id "
        f"once.\n"
        f"  3. When the Dashboard shows {new_id} delivering, delete {old.id} "
        f"(client.v1.webhook_endpoints.delete) and remove its secret.")


def setup(client: stripe.StripeClient, url: str, *, dry_run: bool, out: TextIO) -> int:
    """Create or fix the shop's endpoint at ``url``; print what (would) change."""
    state = inspect(client, url)
    endpoint = state.endpoint
    if endpoint is not None and not state.defects():
        print(f"ok: {endpoint.id} at {endpoint.url} is enabled, has all "
              f"{len(state.wanted)} event types and API version {state.version}", file=out)
        for line in _describe_others(state):
            print(f"note: {line}", file=out)
        return 0
    if endpoint is None or state.other_version is not None:
        # A version cannot be changed: a second endpoint, told apart by its query string.
        new_url = url if endpoint is None else f"{url}?api_version={state.version}"
        params = _new_endpoint_params(state, new_url)
        print(f"{'would create' if dry_run else 'creating'} an endpoint at {new_url}: "
              f"{len(state.wanted)} event types, API version {state.version}", file=out)
        if dry_run:
            print("  enabled_events: " + ", ".join(state.wanted), file=out)
            return 0
        created = client.v1.webhook_endpoints.create(params=params)
        print(f"created {created.id}. Its signing secret, shown only now:\n\n"
              f"  {created.secret}\n\n"
              f"Put it in the shop's configuration: STRIPE_WEBHOOK_SECRET, or "
              f"webhook_secret = ... in the .ini's [filter:checkout], or "
              f"CheckoutMiddleware(webhook_secret=...).", file=out)
        if endpoint is not None:
            print(_switch_steps(endpoint, created.id, state.version), file=out)
        return 0
    update: WebhookEndpointUpdateParams = {}
    if state.disabled:
        update["disabled"] = False
    if state.missing_types:
        kept = [t for t in endpoint.enabled_events or () if t != "*"]
        update["enabled_events"] = cast(Any, sorted(set(kept) | set(state.wanted)))
    verb = "would update" if dry_run else "updating"
    for defect in state.defects():
        print(f"{verb} {endpoint.id}: {defect}", file=out)
    if state.missing_types:
        print(f"  enabled_events += {', '.join(state.missing_types)}", file=out)
    if dry_run:
        return 0
    client.v1.webhook_endpoints.update(endpoint.id, params=update)
    print(f"updated {endpoint.id}; its signing secret is unchanged (Stripe shows it only at "
          "creation)", file=out)
    return 0


def setup_settings(given: dict[str, Any]) -> Settings:
    """The shop's settings from the options ``check`` gathers (the environment, ``--ini``,
    the command line); a missing signing secret is no error here: setup makes one."""
    if not configured(given, "webhook_secret"):
        given = {**given, "webhook_secret": _NO_SECRET_YET}
    return load_settings(given, serving=False)


def run_setup(given: dict[str, Any], *, dry_run: bool, out: TextIO | None = None) -> int:
    """``webhook-endpoint setup`` with the gathered options: exit 0 done (or nothing to
    do), 1 failed."""
    out = out or sys.stdout
    try:
        settings = setup_settings(given)
    except ValueError as exc:
        print(f"webhook-endpoint: {exc}", file=sys.stderr)
        return 1
    url = shop_webhook_url(settings)
    if url is None:
        print("webhook-endpoint: the shop's address is unknown; set domain_url (WEB_APP_URL "
              "or --domain-url)", file=sys.stderr)
        return 1
    client, http_client = build_client(settings)
    try:
        return setup(client, url, dry_run=dry_run, out=out)
    except stripe.StripeError as exc:
        print(f"webhook-endpoint: Stripe refused: {type(exc).__name__}: "
              f"{exc.user_message or 'no message'}", file=sys.stderr)
        return 1
    finally:
        http_client.close()  # type: ignore[no-untyped-call]  # untyped in the SDK


def endpoint_defects(settings: Settings, client: stripe.StripeClient) -> tuple[
        str | None, Sequence[str], Sequence[str]]:
    """For ``check``: the shop's webhook URL, its endpoint's defects and notes."""
    url = shop_webhook_url(settings)
    if url is None:
        return None, (), ()
    state = inspect(client, url)
    notes = _describe_others(state) if state.endpoint is not None else []
    return url, state.defects(), notes

