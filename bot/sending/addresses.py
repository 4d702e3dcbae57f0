"""Which of an employee's addresses their credentials go to, and why: the one home of CREDENTIAL_ADDRESS.

A new hire cannot open their work mailbox before their first day, so under `auto` their personal address
is used until their start date (as a day in their own time zone); `work` and `personal` force one. The
admin may switch one employee between the two before confirming (`switch`); the address shown is then
fixed for the batch, and at send time it only has to be still one of the employee's addresses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from bot.settings import Settings
from bot.time_zones import zone_of

AddressSetting = Literal["auto", "work", "personal"]
AddressKind = Literal["work", "personal"]

NO_PERSONAL_ADDRESS = "no personal address"


@dataclass(frozen=True)
class AddressRule:
    """CREDENTIAL_ADDRESS at one moment: `now` decides whether a start date is still ahead."""

    setting: AddressSetting
    now: datetime
    default_time_zone: str
    switches: dict[int, AddressKind] | None = None
    """Employee id -> the address the admin switched them to on the confirmation."""

    @classmethod
    def of(cls, settings: Settings, now: datetime, switches: Mapping[int, str] | None = None) -> AddressRule:
        """CREDENTIAL_ADDRESS at `now`, with the admin's `switches` (anything but work/personal ignored)."""
        kinds: dict[int, AddressKind] = {}
        for employee_id, kind in (switches or {}).items():
            if kind == "work":
                kinds[employee_id] = "work"
            elif kind == "personal":
                kinds[employee_id] = "personal"
        return cls(settings.credential_address, now, settings.default_time_zone, kinds)


@dataclass(frozen=True)
class AddressChoice:
    """The address picked for one employee (the raw text: the caller normalises it) and why."""

    kind: AddressKind | None
    """None: no address can be used (`problem` says why)."""
    raw: str | None
    reason: str
    """What the confirmation shows, e.g. `personal, starts Mon 7 Dec`, `work: no personal address`."""
    problem: str | None = None
    switchable: bool = False
    """Both addresses exist: the admin may switch between them."""


def choose_address(
    rule: AddressRule,
    employee_id: int,
    work: str | None,
    personal: str | None,
    start_date: date | None,
    time_zone: str | None,
) -> AddressChoice:
    """Where the credentials of one employee go under `rule`, and why."""
    work, personal = _given(work), _given(personal)
    switchable = work is not None and personal is not None
    switched = (rule.switches or {}).get(employee_id) if switchable else None
    if switched is not None:
        raw = work if switched == "work" else personal
        return AddressChoice(switched, raw, f"{switched}: switched on the confirmation", None, True)
    if rule.setting == "work":
        return AddressChoice("work", work, "work", None, switchable)
    if rule.setting == "personal":
        if personal is None:
            return AddressChoice(None, None, f"cannot be mailed: {NO_PERSONAL_ADDRESS}", NO_PERSONAL_ADDRESS)
        return AddressChoice("personal", personal, "personal", None, switchable)
    starts = _starts(rule, start_date, time_zone)
    if personal is None:
        return AddressChoice("work", work, "work: no personal address")
    if start_date is None:
        if work is None:
            return AddressChoice("personal", personal, "personal: no work address")
        return AddressChoice("work", work, "work: no start date", None, switchable)
    if starts == "ahead" or work is None:
        why = f"starts {_day(start_date, rule)}" if starts == "ahead" else "no work address"
        return AddressChoice("personal", personal, f"personal, {why}", None, switchable)
    when = "starts today" if starts == "today" else f"started {_day(start_date, rule)}"
    return AddressChoice("work", work, f"work, {when}", None, switchable)


def still_theirs(confirmed: str | None, current: tuple[str | None, ...]) -> bool:
    """The address fixed at confirmation is still one of the employee's (normalised) addresses."""
    return confirmed is not None and confirmed in current


def _given(address: str | None) -> str | None:
    return address if address and address.strip() else None


def _starts(rule: AddressRule, start_date: date | None, time_zone: str | None) -> str:
    """`ahead`, `today` or `past`: the start date against today in the employee's time zone."""
    if start_date is None:
        return "past"
    today = rule.now.astimezone(zone_of(time_zone, rule.default_time_zone)).date()
    return "ahead" if start_date > today else "today" if start_date == today else "past"


def _day(day: date, rule: AddressRule) -> str:
    """`Mon 7 Dec`, with the year when it is not this year's."""
    shown = f"{day:%a} {day.day} {day:%b}"
    return shown if day.year == rule.now.year else f"{shown} {day.year}"
