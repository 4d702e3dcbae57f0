"""Helpers shared by the CLI commands."""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Sequence
from functools import cache

import click

from bot import audit
from bot.context import Context


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
