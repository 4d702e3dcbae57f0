"""SendGrid's suppression lists, asked before a send: is an address on the bounce, block or spam list?

SendGrid drops every later email to an address on its bounce or spam report list ("Bounced Address"). The
confirmation flags such addresses (`check`), so that the admin knows; an address the admin confirms
although it is on the bounce list is sent with `bypass_bounce_management` (see the README). Reading the
lists needs the API key's Suppressions permission: without it, the confirmation says so. The check is
bounded in time (it runs while Slack waits for a window) and in addresses.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.settings import Settings

LISTS = {"bounces": "bounce list", "blocks": "block list", "spam_reports": "spam report list"}
MAX_CHECKED = 10
"""Addresses asked about per confirmation (3 calls each, in parallel); more are not checked."""
CHECK_SECONDS = 1.5
"""The whole check's budget: a Resend opens its window within Slack's 3 seconds."""
NO_PERMISSION = (
    "SendGrid's suppression lists were not checked: the API key lacks the Suppressions permission "
    "(read access), so an address SendGrid suppresses is flagged only if credbot saw it bounce."
)


@dataclass(frozen=True)
class Listing:
    """An address on one of SendGrid's suppression lists."""

    list_name: str
    """`bounces`, `blocks` or `spam_reports`."""
    since: datetime | None

    def describe(self) -> str:
        day = f" since {self.since:%-d %b %Y}" if self.since else ""
        return f"on SendGrid's {LISTS[self.list_name]}{day}"


@dataclass(frozen=True)
class SuppressionCheck:
    listed: dict[str, Listing] = field(default_factory=dict)
    """Per address (lower case), the list that holds it (bounces before spam reports before blocks)."""
    note: str | None = None
    """What the confirmation must say about the check itself (not allowed, not complete), or None."""


BOUNCE_LIST_DROP = "this address bounced before, so SendGrid no longer sends to it"
"""How a drop for "Bounced Address" is put in plain words (the address is on the bounce list)."""


class _Forbidden(Exception):
    pass


def check(settings: Settings, addresses: Sequence[str]) -> SuppressionCheck:
    """Which of `addresses` SendGrid's lists hold (outbox: none, and nothing to say)."""
    if settings.uses_outbox or not addresses:
        return SuppressionCheck()
    wanted = list(dict.fromkeys(address.lower() for address in addresses))
    asked = wanted[:MAX_CHECKED]
    calls = [(address, name) for address in asked for name in LISTS]
    pool = ThreadPoolExecutor(max_workers=min(len(calls), 16), thread_name_prefix="credbot-suppressions")
    futures = {pool.submit(_listing, settings, address, name): (address, name) for address, name in calls}
    done, pending = wait(futures, timeout=CHECK_SECONDS)
    pool.shutdown(wait=False, cancel_futures=True)
    listed: dict[str, Listing] = {}
    forbidden = failed = False
    for future in done:
        address, _ = futures[future]
        try:
            listing = future.result()
        except _Forbidden:
            forbidden = True
            continue
        except (OSError, ValueError):
            failed = True
            continue
        if listing is not None and _rank(listing) < _rank(listed.get(address)):
            listed[address] = listing
    if forbidden:
        return SuppressionCheck(listed, NO_PERMISSION)
    notes = []
    if failed or pending:
        notes.append("SendGrid's suppression lists could not all be checked just now")
    if len(wanted) > len(asked):
        notes.append(f"SendGrid's suppression lists were checked for the first {MAX_CHECKED} addresses only")
    return SuppressionCheck(listed, "; ".join(notes) + "." if notes else None)


def _rank(listing: Listing | None) -> int:
    return len(LISTS) if listing is None else list(LISTS).index(listing.list_name)


def _listing(settings: Settings, address: str, name: str) -> Listing | None:
    """GET /v3/suppression/{name}/{address}: the listing, or None when the list does not hold it."""
    assert settings.sendgrid_api_key is not None
    quoted = urllib.parse.quote(address, safe="")
    url = f"{settings.sendgrid_api_host.rstrip('/')}/v3/suppression/{name}/{quoted}"
    request = urllib.request.Request(  # noqa: S310 (the configured SendGrid host)
        url,
        headers={
            "Authorization": f"Bearer {settings.sendgrid_api_key.get_secret_value()}",
            "Accept": "application/json",
            "User-Agent": "credbot",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=CHECK_SECONDS) as answer:  # noqa: S310
            records = json.loads(answer.read() or b"[]")
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise _Forbidden from None
        if error.code == 404:
            return None
        raise
    if not isinstance(records, list) or not records:
        return None
    created = records[0].get("created") if isinstance(records[0], dict) else None
    since = datetime.fromtimestamp(created, UTC) if isinstance(created, int) and created > 0 else None
    return Listing(name, since)
