"""The /scim/v2 endpoints: HTTP in and out (token, body, paging, errors); the work is in users and groups.

Every answer is `application/scim+json`; every refusal a SCIM error (RFC 7644 §3.12), never an HTML page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, g, request
from pydantic import ValidationError
from scim2_models import Group, ResponseParameters, SCIMException
from sqlalchemy import true
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from bot.context import Context
from bot.scim import attributes, groups, users
from bot.scim.errors import ScimError, from_library, not_found
from bot.scim.filters import group_filter, user_filter
from bot.scim.paging import Listing
from bot.scim.schemas import CONFIG, DEFAULT_COUNT, MAX_RESULTS, UserResource, discovery_documents
from bot.scim.tokens import scim_actor, token_name
from bot.scim.users import ENTERPRISE_SCHEMA

PREFIX = "/scim/v2"
MEDIA_TYPE = "application/scim+json"
ACCEPTED_TYPES = ("application/scim+json", "application/json")
MAX_BODY = 1024 * 1024
"""Largest request body accepted: a user is a few kilobytes, a group PATCH of a thousand members ~100 KB."""
MAX_START_INDEX = 2**31 - 1
"""Beyond any directory; larger values would overflow the database's OFFSET."""
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
_EXTENSION_KEY = "credbot_scim"

log = logging.getLogger(__name__)
T = TypeVar("T")
scim = Blueprint("scim", __name__, url_prefix=PREFIX)


def init_scim(app: Flask, ctx: Context) -> None:
    """Serve /scim/v2 from `app` with `ctx`.

    A test app with SCIM: `app = Flask("test"); init_scim(app, context)`, then `app.test_client()`
    with `Authorization: Bearer <create_token(...)>` (or `credbot.web.create_web_app(context)`, which does
    this too).
    """
    app.extensions[_EXTENSION_KEY] = ctx
    app.register_blueprint(scim)


def _ctx() -> Context:
    ctx: Context = current_app.extensions[_EXTENSION_KEY]
    return ctx


def _answer(body: dict[str, Any] | None, status: int = 200, location: str | None = None) -> Response:
    response = Response(
        json.dumps(body, ensure_ascii=False) if body is not None else "", status, mimetype=MEDIA_TYPE
    )
    if location:
        response.headers["Location"] = location
    return response


@scim.errorhandler(ScimError)
def _refused(error: ScimError) -> Response:
    response = _answer(error.body(), error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="credbot SCIM"'
    return response


@scim.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    return _answer(ScimError(error.code or 400, error.description or error.name).body(), error.code or 400)


@scim.errorhandler(Exception)
def _failed(error: Exception) -> Response:
    log.exception("SCIM request failed: %s %s", request.method, request.path)
    return _answer(ScimError(500, "credbot could not complete this request; it was logged").body(), 500)


@scim.before_request
def _authenticate() -> None:
    """Only a bearer of a token from `credbot scim token create` gets in; the actor is `scim:NAME`.

    The request's one session starts here: the token is read in the same transaction as the work.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    name = None
    if scheme.lower() == "bearer" and token.strip():
        ctx = _ctx()
        session = g.scim_session = ctx.sessions()
        name = token_name(session, token.strip(), ctx.clock.now())
        if session.dirty:  # its last use noted (every few minutes at most)
            session.commit()
    if name is None:
        raise ScimError(401, "a valid bearer token is required (credbot scim token create NAME)")
    g.scim_actor = scim_actor(name)


@scim.teardown_request
def _end_session(error: BaseException | None) -> None:
    """Whatever the request did not commit is rolled back."""
    session: Session | None = g.pop("scim_session", None)
    if session is not None:
        session.close()


def _session() -> Session:
    session: Session = g.scim_session
    return session


def _payload() -> Any:
    """The request's JSON body, refused when too large, of another type or not JSON."""
    if (request.content_length or 0) > MAX_BODY:
        raise ScimError(413, f"the body is larger than {MAX_BODY} bytes")
    if request.mimetype not in ACCEPTED_TYPES:
        raise ScimError(415, f"send the body as {MEDIA_TYPE} (got {request.mimetype or 'no type'})")
    body = request.stream.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise ScimError(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise ScimError(400, "the body is not JSON", "invalidSyntax") from None
    if not isinstance(payload, dict):
        raise ScimError(400, "the body must be a JSON object", "invalidSyntax")
    return payload


def _writer() -> users.Writer:
    return users.Writer(actor=g.scim_actor, settings=_ctx().settings)


def _write(work: Callable[[Session], T]) -> T:
    """Run `work` and commit; a uniqueness race lost at commit is a 409, not a 500."""
    session = _session()
    try:
        result = work(session)
        session.commit()
    except (
        DataError
    ) as error:  # a value the checks let through but the column cannot hold: still the caller's
        raise ScimError(400, "a value is too long or malformed to be stored", "invalidValue") from error
    except IntegrityError as error:
        raise ScimError(
            409, "another request changed the same user or group at once; retry", "uniqueness"
        ) from error
    return result


def _user_url(user_id: str) -> str:
    return f"{request.url_root.rstrip('/')}{PREFIX}/Users/{user_id}"


def _location(kind: str, document: dict[str, Any]) -> dict[str, Any]:
    """The document with its URLs, which only the web layer knows: `meta.location` and the `$ref` of the
    users it names (a group's members, a user's manager)."""
    url = f"{request.url_root.rstrip('/')}{PREFIX}/{kind}/{document['id']}"
    document.setdefault("meta", {})["location"] = url
    for member in document.get("members", []):
        member.update({"$ref": _user_url(member["value"]), "type": "User"})
    manager = document.get(ENTERPRISE_SCHEMA, {}).get("manager")
    if manager:
        manager["$ref"] = _user_url(manager["value"])
    return document


def _selection(model: Any) -> tuple[list[str], list[str]]:
    """The `attributes` and `excludedAttributes` asked for, checked against the resource's schema."""
    asked = {key: request.args[key] for key in ("attributes", "excludedAttributes") if request.args.get(key)}
    if not asked:
        return [], []
    try:
        ResponseParameters[model].model_validate(asked)
    except (ValidationError, SCIMException) as error:
        raise from_library(error) from error
    split = {key: [part.strip() for part in value.split(",") if part.strip()] for key, value in asked.items()}
    return split.get("attributes", []), split.get("excludedAttributes", [])


def _shown(kind: str, document: dict[str, Any], model: Any) -> dict[str, Any]:
    return attributes.select(_location(kind, document), *_selection(model))


def _paging() -> tuple[int, int]:
    """(startIndex, count) from the query: 1-based, count at most MAX_RESULTS (RFC 7644 §3.4.2.4)."""
    try:
        start = int(request.args.get("startIndex", "1"))
        count = int(request.args.get("count", str(DEFAULT_COUNT)))
    except ValueError:
        raise ScimError(400, "startIndex and count must be integers", "invalidValue") from None
    return min(max(start, 1), MAX_START_INDEX), min(max(count, 0), MAX_RESULTS)


def _list(kind: str, total: int, start: int, documents: list[dict[str, Any]], model: Any) -> Response:
    chosen = _selection(model)
    return _answer(
        {
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": len(documents),
            "Resources": [attributes.select(_location(kind, document), *chosen) for document in documents],
        }
    )


# --- discovery -------------------------------------------------------------------------------------


@scim.get("/ServiceProviderConfig")
def service_provider_config() -> Response:
    document = CONFIG.model_dump()
    document["meta"] = {"resourceType": "ServiceProviderConfig", "location": request.base_url}
    return _answer(document)


def _discovery(kind: str, key: str) -> list[dict[str, Any]]:
    found = []
    for document in discovery_documents()[kind]:
        resource_type = "Schema" if kind == "Schemas" else "ResourceType"
        location = f"{request.url_root.rstrip('/')}{PREFIX}/{kind}/{document[key]}"
        found.append({**document, "meta": {"resourceType": resource_type, "location": location}})
    return found


@scim.get("/Schemas")
@scim.get("/ResourceTypes")
def discovery_list() -> Response:
    kind = request.path.rsplit("/", 1)[-1]
    documents = _discovery(kind, "id")
    return _answer(
        {
            "schemas": [LIST_SCHEMA],
            "totalResults": len(documents),
            "startIndex": 1,
            "itemsPerPage": len(documents),
            "Resources": documents,
        }
    )


@scim.get("/Schemas/<path:item>")
@scim.get("/ResourceTypes/<item>")
def discovery_item(item: str) -> Response:
    kind = request.path.removeprefix(PREFIX + "/").split("/", 1)[0]
    for document in _discovery(kind, "id"):
        if document["id"].lower() == item.lower():
            return _answer(document)
    raise not_found(f"{kind.removesuffix('s')} {item}")


# --- Users -----------------------------------------------------------------------------------------


@scim.get("/Users")
def list_users() -> Response:
    text = request.args.get("filter", "").strip()
    where = user_filter(text) if text else true()
    start, count = _paging()
    ctx = _ctx()
    listing = Listing(f"{ctx.settings.database_url}\n{text}", ctx.clock.now())
    total, documents = users.list_users(_session(), where, start, count, listing)
    return _list("Users", total, start, documents, UserResource)


@scim.post("/Users")
def create_user() -> Response:
    payload, writer = _payload(), _writer()
    document = _write(lambda session: users.create_user(session, writer, payload))
    shown = _shown("Users", document, UserResource)
    return _answer(shown, 201, location=document["meta"]["location"])


@scim.get("/Users/<user_id>")
def get_user(user_id: str) -> Response:
    document = users.get_user(_session(), user_id)
    return _answer(_shown("Users", document, UserResource))


@scim.put("/Users/<user_id>")
def replace_user(user_id: str) -> Response:
    payload, writer = _payload(), _writer()
    document = _write(lambda session: users.replace_user(session, writer, user_id, payload))
    return _answer(_shown("Users", document, UserResource))


@scim.patch("/Users/<user_id>")
def patch_user(user_id: str) -> Response:
    payload, writer = _payload(), _writer()
    document = _write(lambda session: users.patch_user(session, writer, user_id, payload))
    return _answer(_shown("Users", document, UserResource))


@scim.delete("/Users/<user_id>")
def delete_user(user_id: str) -> Response:
    writer = _writer()
    _write(lambda session: users.deactivate_user(session, writer, user_id))
    return _answer(None, 204)


# --- Groups ----------------------------------------------------------------------------------------


@scim.get("/Groups")
def list_groups() -> Response:
    text = request.args.get("filter", "").strip()
    where = group_filter(text) if text else true()
    start, count = _paging()
    _, excluded = _selection(Group)
    total, documents = groups.list_groups(_session(), where, start, count, _wants_members(excluded))
    return _list("Groups", total, start, documents, Group)


def _wants_members(excluded: list[str]) -> bool:
    return not any(path.lower() in ("members", "members.value") for path in excluded)


@scim.post("/Groups")
def create_group() -> Response:
    payload, writer = _payload(), _writer()
    document = _write(lambda session: groups.create_group(session, writer.actor, payload))
    shown = _shown("Groups", document, Group)
    return _answer(shown, 201, location=document["meta"]["location"])


@scim.get("/Groups/<group_id>")
def get_group(group_id: str) -> Response:
    _, excluded = _selection(Group)
    document = groups.get_group(_session(), group_id, _wants_members(excluded))
    return _answer(_shown("Groups", document, Group))


@scim.put("/Groups/<group_id>")
def replace_group(group_id: str) -> Response:
    payload, writer = _payload(), _writer()
    document = _write(lambda session: groups.replace_group(session, writer.actor, group_id, payload))
    return _answer(_shown("Groups", document, Group))


@scim.patch("/Groups/<group_id>")
def patch_group(group_id: str) -> Response:
    payload, writer = _payload(), _writer()
    document = _write(lambda session: groups.patch_group(session, writer.actor, group_id, payload))
    return _answer(_shown("Groups", document, Group))


@scim.delete("/Groups/<group_id>")
def delete_group(group_id: str) -> Response:
    writer = _writer()
    _write(lambda session: groups.delete_group(session, writer.actor, group_id))
    return _answer(None, 204)


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@scim.post("/.search")
def search_everything() -> Response:
    """Searching every resource type at once (RFC 7644 §3.4.3) is not served: 501, as §3.12 says."""
    raise ScimError(501, f"searching every resource type at once is not served: GET {PREFIX}/Users?filter=…")


@scim.route("/<path:anything>", methods=_METHODS)
def unknown_endpoint(anything: str) -> Response:
    """A path no endpoint serves is a 404; a known path asked with another method is a 405 (RFC 7231)."""
    allowed = _allowed_methods(request.path)
    if allowed:
        error = ScimError(405, f"{PREFIX}/{anything} answers only {', '.join(allowed)}, not {request.method}")
        response = _refused(error)
        response.headers["Allow"] = ", ".join(allowed)
        return response
    raise ScimError(404, f"there is no SCIM endpoint {PREFIX}/{anything}")


def _allowed_methods(path: str) -> list[str]:
    """The methods an endpoint other than this catch-all serves at `path`."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in _METHODS:
        try:
            endpoint, _ = adapter.match(path, method=method)
        except HTTPException:
            continue
        if endpoint != "scim.unknown_endpoint":
            allowed.append(method)
    return allowed
