"""Text that someone outside credbot wrote, made inert before it is shown (Slack, the terminal).

A bounce reason is written by whoever runs the recipient's mail server, and a mail API's error by the API:
posted under credbot's name in the HR channel, `http://evil.example/reset` or `*Reset your password
here*` would be a phishing message. `inert` is the one place that text passes through on its way out.
"""

from __future__ import annotations

import re
import unicodedata

MAX_OUTSIDE_TEXT = 300

_SCHEME = re.compile(
    r"\b(h)tt(ps?)(?=:|\[:\])|\b(f)t(p)(?=:)|\b(mailto|tel|javascript|data)(:)", re.IGNORECASE
)
_HOST = re.compile(r"(?<![\w.-])((?:[a-z0-9-]*[a-z][a-z0-9-]*\.)+[a-z]{2,63})(?![\w-])", re.IGNORECASE)
"""A host name: labels holding a letter, ending in an alphabetic top-level domain (not `5.1.1`)."""
_MARKUP = str.maketrans(
    {"*": "\uff0a", "_": "\uff3f", "~": "\uff5e", "`": "\uff40", "<": "\u2039", ">": "\u203a"}
)
"""Slack's mrkdwn markers and its `<link|text>` / `<!channel>` brackets, as look-alikes that do nothing."""


def inert(text: object, limit: int = MAX_OUTSIDE_TEXT) -> str:
    """`text` as one line of plain text: no control or invisible characters, links defanged
    (`hxxp://evil[.]example`, `evil[.]example`, `a@evil[.]example`), markup markers and angle brackets
    replaced by look-alikes, at most `limit` characters."""
    raw = "" if text is None else str(text)
    visible = "".join(" " if unicodedata.category(char)[0] in "CZ" else char for char in raw)
    line = " ".join(visible.split())
    line = _SCHEME.sub(_defang_scheme, line)
    line = _HOST.sub(lambda host: host.group(1).replace(".", "[.]"), line)
    line = line.translate(_MARKUP)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _defang_scheme(match: re.Match[str]) -> str:
    if match.group(1):
        return f"{match.group(1)}xx{match.group(2)}"
    if match.group(3):
        return f"{match.group(3)}x{match.group(4)}"
    return f"{match.group(5)}[:]"
