"""What credbot's SCIM service serves: the User and Group resources, their schemas and the service's
capabilities, as scim2-models describes them (discovery answers are built from these, never by hand)."""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    EnterpriseUser,
    ETag,
    Extension,
    Filter,
    Group,
    Patch,
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


UserResource = User[EnterpriseUser | CredbotUser]
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
    models=[User, EnterpriseUser, CredbotUser, Group],
    resource_types=[
        ResourceType.from_resource(UserResource),
        ResourceType.from_resource(Group),
    ],
    config=CONFIG,
    policy=POLICY,
)


def discovery_documents() -> dict[str, list[dict[str, Any]]]:
    """The Schemas and ResourceTypes documents, by endpoint name, without their `meta.location`."""
    return {
        "Schemas": [schema.model_dump() for schema in PROVIDER.schemas],
        "ResourceTypes": [resource_type.model_dump() for resource_type in PROVIDER.resource_types],
    }
