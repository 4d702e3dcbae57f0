"""How long the portal takes to answer a recovery request, for an invited, an active and an unknown person.

    .venv/bin/python bench/bench_portal_recovery.py [--rounds 200]

POSTs "Didn't get your email, or it expired?" through the real portal (Flask's test client, CSRF and the
rate limiter included) against a fresh SQLite file, with the background jobs running in this process as
in a development install. The three kinds go in turns, their order rotating each round; the script prints
each kind's median and spread and how often each was the slowest of its round: about a third each means
the answer's timing does not tell who exists. (The work itself, an approval request or a reset email, is
done by the job after the answer.)
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask.testing import FlaskClient

from bot import jobs
from bot.context import Context
from bot.settings import Settings
from models import AccountStatus, make_engine, make_session_factory, utcnow
from tests.builders import add_person
from tests.databases import throwaway_database
from tests.portal_helpers import make_portal_app

KINDS = {"invited": "adoe", "active": "bsmith", "unknown": "nobody"}


def make_context(url: str, outbox: Path) -> Context:
    settings = Settings(
        _env_file=None,
        database_url=url,
        outbox_dir=outbox,
        secret_key="bench-secret-key",
        recovery_rate_limit="1000000/minute",
    )
    return Context(settings=settings, sessions=make_session_factory(make_engine(url)))


def ask(client: FlaskClient, who: str) -> float:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/portal/recover").text)
    assert token
    start = time.perf_counter()
    response = client.post("/portal/recover", data={"who": who, "csrf_token": token.group(1)})
    took = (time.perf_counter() - start) * 1000
    assert response.status_code == 200
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as directory, throwaway_database("sqlite", Path(directory)) as url:
        ctx = make_context(url, Path(directory) / "outbox")
        add_person(ctx, credentials_emailed_at=utcnow())
        add_person(
            ctx, username="bsmith", email="bob@example.com", must_change=False, status=AccountStatus.ACTIVE
        )
        jobs.configure(ctx, redis_url="")
        client = make_portal_app(ctx).test_client()
        for who in KINDS.values():
            ask(client, who)  # warm up
        times: dict[str, list[float]] = {kind: [] for kind in KINDS}
        slowest = dict.fromkeys(KINDS, 0)
        order = list(KINDS)
        for number in range(rounds):
            turn = order[number % 3 :] + order[: number % 3]
            this_round = {kind: ask(client, KINDS[kind]) for kind in turn}
            for kind, took in this_round.items():
                times[kind].append(took)
            slowest[max(this_round, key=lambda kind: this_round[kind])] += 1
        jobs.join()
        jobs.shutdown()
    print(f"{'kind':<8} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'slowest':>8}  ({rounds} rounds)")
    for kind, found in times.items():
        deciles = statistics.quantiles(found, n=10)
        print(
            f"{kind:<8} {statistics.median(found):>10.2f} {deciles[0]:>8.2f} {deciles[-1]:>8.2f} "
            f"{slowest[kind]:>8}"
        )


if __name__ == "__main__":
    main()
