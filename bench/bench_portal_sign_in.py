"""How long a portal sign-in takes for each kind of refusal, to show they cannot be told apart by timing.

    .venv/bin/python bench/bench_portal_sign_in.py [--rounds 20] [--pairs 300]

Signs in against a fresh SQLite file: unknown user, wrong password, locked account, disabled account,
and (for reference) the right password. Prints the median and spread per case; the refusals should
be within a few milliseconds of each other (each costs the same statements and two argon2id
verifications). Then times --pairs interleaved pairs of a wrong password for an existing username
and for an unknown one (which goes first alternates), and prints both medians and how often each
was the slower of its pair: about half each means timing does not tell them apart.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.context import Context
from bot.portal.auth import sign_in
from bot.settings import Settings
from models import AccountStatus, make_engine, make_session_factory, utcnow
from tests.builders import add_person
from tests.databases import throwaway_database

PASSWORD = "orbit-lantern-pickle-meadow"
ACTIVE: dict[str, Any] = {"status": AccountStatus.ACTIVE, "roles": ()}


def make_context(url: str) -> Context:
    settings = Settings(_env_file=None, database_url=url, lockout_threshold=10**9)
    return Context(settings=settings, sessions=make_session_factory(make_engine(url)))


def add_account(ctx: Context, username: str, **fields: Any) -> None:
    """An account that signs in with PASSWORD: active and without roles unless `fields` say otherwise."""
    add_person(ctx, username=username, password=PASSWORD, must_change=False, **{**ACTIVE, **fields})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=300)
    arguments = parser.parse_args()
    rounds = arguments.rounds
    with tempfile.TemporaryDirectory() as directory, throwaway_database("sqlite", Path(directory)) as url:
        ctx = make_context(url)
        add_account(ctx, "active")
        add_account(ctx, "locked", locked_until=utcnow() + timedelta(days=1))
        add_account(ctx, "disabled", status=AccountStatus.DISABLED)
        cases = {
            "unknown user": ("nobody", PASSWORD),
            "wrong password": ("active", "not-the-password-1"),
            "locked account": ("locked", PASSWORD),
            "disabled account": ("disabled", PASSWORD),
            "right password": ("active", PASSWORD),
        }
        sign_in(ctx, "active", PASSWORD)  # warm up
        print(f"{'case':<18} {'median ms':>10} {'min ms':>8} {'max ms':>8}  ({rounds} rounds)")
        for name, (username, password) in cases.items():
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                sign_in(ctx, username, password)
                times.append((time.perf_counter() - start) * 1000)
            print(f"{name:<18} {statistics.median(times):>10.1f} {min(times):>8.1f} {max(times):>8.1f}")
        interleaved_pairs(ctx, arguments.pairs)


def timed_sign_in(ctx: Context, username: str) -> float:
    start = time.perf_counter()
    sign_in(ctx, username, "not-the-password-1")
    return (time.perf_counter() - start) * 1000


def interleaved_pairs(ctx: Context, pairs: int) -> None:
    """Existing vs unknown username, one of each per pair, alternating which goes first."""
    known, unknown = [], []
    for number in range(pairs):
        if number % 2:
            unknown.append(timed_sign_in(ctx, "nobody"))
            known.append(timed_sign_in(ctx, "active"))
        else:
            known.append(timed_sign_in(ctx, "active"))
            unknown.append(timed_sign_in(ctx, "nobody"))
    known_slower = sum(k > u for k, u in zip(known, unknown, strict=True))
    unknown_slower = sum(u > k for k, u in zip(known, unknown, strict=True))
    print(f"\n{pairs} interleaved pairs, wrong password:")
    print(f"  existing username median {statistics.median(known):.1f} ms")
    print(f"  unknown username  median {statistics.median(unknown):.1f} ms")
    print(f"  existing slower in {known_slower} pairs, unknown slower in {unknown_slower}")


if __name__ == "__main__":
    main()
