"""The `credbot` command line: the same data as the Slack app, without Slack."""

from __future__ import annotations

import logging

import click

from bot.cli.accounts import accounts
from bot.cli.admins import admins
from bot.cli.batches import batches
from bot.cli.credentials import credentials
from bot.cli.db import db
from bot.cli.deliveries import deliveries
from bot.cli.digest import digest
from bot.cli.employees import employees
from bot.cli.report import audit, report
from bot.cli.scim import scim
from bot.cli.serve import serve, socket
from bot.cli.worker import worker


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log more detail.")
def main(verbose: bool) -> None:
    """credbot: create Self-Service accounts and email employees their credentials."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


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
