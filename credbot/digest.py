"""`credbot digest`: the daily digest printed (for cron), or posted to AUDIT_CHANNEL_ID with --post."""

from __future__ import annotations

import click

from bot.cli.common import context
from bot.digest import Digest, build_digest
from bot.onboarding import Person
from handlers.digest import DigestNotPosted, post_digest

TIME = "%Y-%m-%d %H:%M"


def _line(person: Person, note: str) -> str:
    username = f", {person.username}" if person.username else ""
    return f"  {person.name} ({person.employee_number}{username}){note}"


def digest_lines(digest: Digest) -> list[str]:
    """The digest as plain text lines."""
    lines = [f"credbot digest, {digest.at:{TIME}} UTC"]
    parts = [
        ("Credentials expiring within 24 hours", digest.expiring, "expiring"),
        ("Expired unused in the last 24 hours", digest.expired_recently, "expired"),
        ("Locked accounts", digest.locked, "locked"),
    ]
    for title, people, kind in parts:
        lines.append(f"\n{title}: {len(people)}")
        for person in people:
            if kind == "locked":
                note = f": locked until {person.locked_until:{TIME}} UTC" if person.locked_until else ""
            else:
                note = f": {'expires' if kind == 'expiring' else 'expired'} {person.deadline:{TIME}} UTC"
            lines.append(_line(person, note))
    lines.append(f"\nExpired unused in all: {digest.expired_total}")
    return lines


@click.command()
@click.option("--post", is_flag=True, help="Post it to AUDIT_CHANNEL_ID in Slack instead of printing it.")
def digest(post: bool) -> None:
    """Print (or --post) the daily digest.

    Whose credentials expire within 24 hours, who let them expire unused, who is locked.
    """
    ctx = context()
    if post:
        try:
            post_digest(ctx)
        except DigestNotPosted as error:
            raise click.ClickException(str(error)) from error
        click.echo(f"Posted the digest to {ctx.settings.audit_channel_id}.")
        return
    with ctx.sessions() as session:
        data = build_digest(session)
    click.echo("\n".join(digest_lines(data)))
