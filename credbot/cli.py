"""The `credbot` command line: the same data as the Slack app, without Slack, and the commands that start
credbot's processes. An entry point: it plugs the Slack adapter into the core (`credbot.wiring`) before
any command runs (a Slack batch resumed by hand runs with its trail)."""

from __future__ import annotations

import logging

import click

from bot.cli.accounts import accounts
from bot.cli.admins import admins
from bot.cli.batches import batches
from bot.cli.credentials import credentials
from bot.cli.db import db
from bot.cli.deliveries import deliveries
from bot.cli.employees import employees
from bot.cli.report import audit, report
from bot.cli.scim import scim
from credbot.digest import digest
from credbot.serve import serve, socket
from credbot.wiring import wire_slack
from credbot.worker import worker


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log more detail.")
def main(verbose: bool) -> None:
    """credbot: create Self-Service accounts and email employees their credentials."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    wire_slack()


main.add_command(db)
main.add_command(admins)
main.add_command(employees)
main.add_command(accounts)
main.add_command(credentials)
main.add_command(batches)
main.add_command(report)
main.add_command(deliveries)
main.add_command(audit)
main.add_command(digest)
main.add_command(scim)
main.add_command(serve)
main.add_command(socket)
main.add_command(worker)
