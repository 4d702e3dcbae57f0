"""Helpers shared by the CLI commands."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterable, Sequence
from functools import cache

import click
from sqlalchemy.orm import Session

from bot import audit
from bot.context import Context
from bot.lookup import NamedEmployee, resolve_employees


@cache
def context() -> Context:
    """The process's context, built on first use so `--help` needs no database."""
    return Context.from_settings()


def cli_actor() -> str:
    """Who runs the command, as recorded in the audit log."""
    try:
        return audit.cli_actor(getpass.getuser())
    except OSError:
        return audit.cli_actor(None)


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(value: object) -> str:
    """`value` as text with every non-printable character escaped (`\\x1b`, `\\n`, `\\u202e`...), so
    that data from the directory cannot move the cursor, erase lines or retitle the terminal."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if char in _ESCAPES:
        return _ESCAPES[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print rows as a plain, aligned text table, non-printable characters escaped."""
    text_rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text_rows)]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo(line.rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for row in text_rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_more(shown: int, total: int, option: str = "--limit") -> None:
    """Say that a list stopped before its end, and how to see more."""
    if total > shown:
        click.echo(f"… and {total - shown:,} more (use {option})")


def employees_named(session: Session, words: Sequence[str], nothing_done: str) -> list[NamedEmployee]:
    """The employees `words` name (number, email address or username); a clear error naming the words
    that name nobody or more than one, ending with `nothing_done`."""
    resolved = resolve_employees(session, words)
    if problem := resolved.problem():
        raise click.ClickException(f"{printable(problem)}; {nothing_done}")
    return resolved.employees


def stdin_is_a_terminal() -> bool:
    return sys.stdin.isatty()


def confirm_many(question: str, count: int, yes: bool) -> None:
    """Before a change to more than one account (after the caller listed them): ask, unless `yes`.

    Without a terminal to ask on (cron, CI, a pipe) and without --yes, refuse rather than guess.
    """
    if yes or count <= 1:
        return
    if not stdin_is_a_terminal():
        raise click.ClickException(
            f"this changes {count:,} accounts and there is no terminal to ask for confirmation: "
            "pass --yes to go ahead; nothing was changed"
        )
    if not click.confirm(question, default=False):
        raise click.ClickException("not confirmed; nothing was changed")
