"""Lists an admin typed or a file gave, read one way everywhere: stripped, blanks dropped, each once."""

from __future__ import annotations

from collections.abc import Iterable


def unique_words(words: Iterable[str]) -> list[str]:
    """`words` stripped, the blank ones dropped and repeats left out, in their order."""
    return list(dict.fromkeys(stripped for word in words if (stripped := word.strip())))
