"""SCIM's error answers (RFC 7644 §3.12): every refusal is a status, a `scimType` where one fits, and a
detail in words for the identity provider's admin."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from scim2_models import Error, SCIMException

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(Exception):
    """A request refused: answered with `body()` and `status`."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status), "detail": self.detail}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


def invalid_value(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


def uniqueness(detail: str) -> ScimError:
    return ScimError(409, detail, "uniqueness")


def not_found(what: str) -> ScimError:
    return ScimError(404, f"{what} not found")


def from_library(error: SCIMException | ValidationError) -> ScimError:
    """The refusal scim2-models raised while reading a payload, a filter or a path, as a ScimError."""
    if isinstance(error, SCIMException):
        return ScimError(error.status, str(error), error.scim_type or None)
    found = Error.from_validation_errors(error)
    first = found[0] if found else Error(status=400, detail="invalid request")
    detail = "; ".join(item.detail or "" for item in found) or "invalid request"
    return ScimError(first.status or 400, detail, first.scim_type or None)
