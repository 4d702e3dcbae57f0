"""What credbot's SCIM service serves: the User and Group resources, their schemas and the service's
capabilities, as scim2-models describes them (discovery answers are built from these, never by hand)."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import Field, field_validator
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    EnterpriseUser,
    ETag,
    Extension,
    Filter,
    Group,
    Manager,
    Patch,
    Reference,
    Required,
    ResourceType,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)
from scim2_models.urn import URN

CREDBOT_USER_SCHEMA = "urn:ietf:params:scim:schemas:extension:credbot:2.0:User"
MAX_RESULTS = 1000
"""The most resources one page lists (`count` larger than this is cut down to it)."""
DEFAULT_COUNT = 100


class CredbotUser(Extension):
    """credbot's extension of the User: the start date, which no standard schema has."""

    __schema__ = URN(CREDBOT_USER_SCHEMA)

    start_date: str | None = None
    """The first working day, `YYYY-MM-DD` (credentials are scheduled for it)."""


class ManagerId(Manager):
    """The manager by their id alone: Okta and Entra send no `$ref`, which the RFC's schema requires."""

    ref: Annotated[Reference[User] | None, Required.false] = Field(  # type: ignore[type-arg]
        None, serialization_alias="$ref", validation_alias="$ref"
    )


class Enterprise(EnterpriseUser):
    """The enterprise extension as identity providers send it (schema unchanged)."""

    __schema__ = EnterpriseUser.__schema__

    manager: ManagerId | None = None

    @field_validator("manager", mode="before")
    @classmethod
    def _manager_as_string(cls, value: Any) -> Any:
        """Entra's PATCH gives the manager as a plain string (the id)."""
        return {"value": value} if isinstance(value, str) else value


UserResource = User[Enterprise | CredbotUser]
"""A credbot user: the core User, the enterprise extension (employeeNumber, department, manager) and
credbot's (startDate)."""

POLICY = ScimPolicy(
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)
"""Entra's ways, which RFC 7644 leaves open: a `remove` whose `value` names the members to remove, and a
`replace` of `emails[type eq "work"].value` that creates the work address when there is none."""

CONFIG = ServiceProviderConfig(
    documentation_uri=None,
    patch=Patch(supported=True),
    bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
    filter=Filter(supported=True, max_results=MAX_RESULTS),
    change_password=ChangePassword(supported=False),
    sort=Sort(supported=False),
    etag=ETag(supported=False),
    authentication_schemes=[
        AuthenticationScheme(
            type=AuthenticationScheme.Type.oauthbearertoken,
            name="Bearer token",
            description="A token from `credbot scim token create NAME`, sent as `Authorization: Bearer …`.",
            primary=True,
        )
    ],
)

PROVIDER = ScimProvider(
    models=[User, Enterprise, CredbotUser, Group],
    resource_types=[
        ResourceType.from_resource(UserResource),
        ResourceType.from_resource(Group),
    ],
    config=CONFIG,
    policy=POLICY,
)


STORED_ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {
    User.__schema__: {
        "userName": (),
        "name": ("givenName", "familyName"),
        "displayName": (),
        "timezone": (),
        "active": (),
        "emails": ("value", "type", "primary"),
    },
    EnterpriseUser.__schema__: {"employeeNumber": (), "department": (), "manager": ("value", "$ref")},
    CREDBOT_USER_SCHEMA: {"startDate": ()},
}
"""The User attributes (and sub-attributes) credbot stores: the only ones its Schemas publish, so an
identity provider maps nothing that would be dropped. Other schemas are published whole."""
REQUIRED = {"name", "name.givenName", "name.familyName", "employeeNumber"}
"""Refused when missing (the directory's rules: every employee has a number, a first and a last name)."""
READ_ONLY = {"displayName", "emails.primary"}
"""Made by credbot (`givenName familyName`; the work address is the primary one), never written."""
CANONICAL_VALUES = {"timezone": sorted(available_timezones()), "emails.type": ["work", "home"]}
"""The only values credbot accepts: an IANA time zone; a work or a home (personal) address."""


IMMUTABLE = {"employeeNumber"}
"""Given at creation, never changed: it identifies the employee."""


def _published(attribute: dict[str, Any], path: str, keep: tuple[str, ...]) -> dict[str, Any]:
    attribute = {**attribute, "required": bool(attribute.get("required")) or path in REQUIRED}
    if path in READ_ONLY:
        attribute["mutability"] = "readOnly"
    if path in IMMUTABLE:
        attribute["mutability"] = "immutable"
    if path in CANONICAL_VALUES:
        attribute["canonicalValues"] = CANONICAL_VALUES[path]
    if keep:
        attribute["subAttributes"] = [
            _published(sub, f"{path}.{sub['name']}", ())
            for sub in attribute.get("subAttributes") or []
            if sub["name"] in keep
        ]
    return attribute


def _schema_document(schema: dict[str, Any]) -> dict[str, Any]:
    stored = STORED_ATTRIBUTES.get(schema["id"])
    if stored is None:
        return schema
    attributes = [
        _published(attribute, attribute["name"], stored[attribute["name"]])
        for attribute in schema["attributes"]
        if attribute["name"] in stored
    ]
    return {**schema, "attributes": attributes}


def discovery_documents() -> dict[str, list[dict[str, Any]]]:
    """The Schemas and ResourceTypes documents, by endpoint name, without their `meta.location`."""
    return {
        "Schemas": [_schema_document(schema.model_dump()) for schema in PROVIDER.schemas],
        "ResourceTypes": [resource_type.model_dump() for resource_type in PROVIDER.resource_types],
    }
