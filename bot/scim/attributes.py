"""`attributes` and `excludedAttributes` (RFC 7644 §3.9) applied to the JSON documents credbot serves."""

from __future__ import annotations

import copy
from typing import Any

ALWAYS = ("schemas", "id")
"""Returned whatever is asked (`returned: always`)."""


def _split(path: str, schemas: list[str]) -> tuple[str | None, str, str | None]:
    """(extension schema or None for the core, attribute, sub-attribute) of an attribute path."""
    lowered = path.lower()
    for schema in schemas:
        if lowered == schema.lower():
            return schema, "", None
        if lowered.startswith(schema.lower() + ":"):
            rest = path[len(schema) + 1 :]
            attr, _, sub = rest.partition(".")
            return schema, attr, sub or None
    if lowered.startswith("urn:") and ":" in path:
        core, _, rest = path.rpartition(":")
        if core.lower().endswith(":core:2.0:user") or core.lower().endswith(":core:2.0:group"):
            path = rest
    attr, _, sub = path.partition(".")
    return None, attr, sub or None


def _find(document: dict[str, Any], name: str) -> str | None:
    return next((key for key in document if key.lower() == name.lower()), None)


def select(document: dict[str, Any], attributes: list[str], excluded: list[str]) -> dict[str, Any]:
    """`document` with only the `attributes` asked for (plus ALWAYS), or without the `excluded` ones."""
    extensions = [schema for schema in document.get("schemas", [])[1:] if isinstance(schema, str)]
    if attributes:
        chosen: dict[str, Any] = {key: document[key] for key in ALWAYS if key in document}
        for path in attributes:
            schema, attr, sub = _split(path, extensions)
            source = document.get(schema, {}) if schema else document
            target = chosen.setdefault(schema, {}) if schema else chosen
            if not attr:
                target.update(source)
                continue
            key = _find(source, attr)
            if key is None:
                continue
            value = source[key]
            if sub is None or not isinstance(value, dict | list):
                target[key] = value
            elif isinstance(value, dict):
                sub_key = _find(value, sub)
                if sub_key is not None:
                    target.setdefault(key, {})[sub_key] = value[sub_key]
            else:
                target[key] = [{k: v for k, v in item.items() if k.lower() == sub.lower()} for item in value]
        return {key: value for key, value in chosen.items() if value != {}}
    if not excluded:  # the common case (every page of a listing): nothing to copy
        return document
    trimmed = copy.deepcopy(document)
    for path in excluded:
        schema, attr, sub = _split(path, extensions)
        holder = trimmed.get(schema) if schema else trimmed
        if not isinstance(holder, dict):
            continue
        if not attr:
            trimmed.pop(schema or "", None)
            continue
        key = _find(holder, attr)
        if key is None or key in ALWAYS:
            continue
        value = holder[key]
        if sub is None:
            del holder[key]
        elif isinstance(value, dict):
            value.pop(_find(value, sub) or "", None)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    item.pop(_find(item, sub) or "", None)
    return trimmed
