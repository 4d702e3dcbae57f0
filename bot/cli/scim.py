"""`credbot scim token`: the bearer tokens identity providers provision the directory with."""

from __future__ import annotations

import click

from bot.cli.common import cli_actor, context, print_table
from bot.scim.tokens import TokenError, create_token, list_tokens, revoke_token


@click.group()
def scim() -> None:
    """SCIM provisioning (Okta, Entra ID): bearer tokens."""


@scim.group()
def token() -> None:
    """Bearer tokens for /scim/v2."""


@token.command("create")
@click.argument("name")
def create_command(name: str) -> None:
    """Create a token NAME (e.g. okta) and print it once.

    Only its hash is kept. Changes made with it are audited as scim:NAME.
    """
    try:
        with context().sessions.begin() as session:
            secret = create_token(session, name, cli_actor())
    except TokenError as error:
        raise click.ClickException(str(error)) from error
    click.echo(secret)
    click.echo("Copy it into the identity provider now: it is not shown again.", err=True)


@token.command("list")
def list_command() -> None:
    """List the tokens (never the tokens themselves)."""
    with context().sessions() as session:
        rows = [
            (
                t.name,
                t.created_by,
                f"{t.created_at:%Y-%m-%d %H:%M}",
                f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never",
            )
            for t in list_tokens(session)
        ]
    print_table(["NAME", "CREATED BY", "CREATED", "LAST USED"], rows)


@token.command("revoke")
@click.argument("name")
def revoke_command(name: str) -> None:
    """Revoke the token NAME: it is refused from now on."""
    try:
        with context().sessions.begin() as session:
            revoke_token(session, name, cli_actor())
    except TokenError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Token {name.strip().lower()} revoked.")
