"""A Slack Web API stand-in: a real threaded HTTP server on 127.0.0.1 used as SLACK_API_URL.

It records every call (method, arguments, token), answers like Slack for the methods credbot uses,
checks views and messages against Block Kit's limits (a violation is answered `invalid_blocks`, blocks
over about 13,000 characters `msg_blocks_too_long`, both kept in `problems`), and can be told to fail:
`fail("views.open", "expired_trigger_id")`, HTTP 429 with Retry-After, or HTTP 500.

Like Slack it also:
- limits each method per workspace by its tier (chat.update 50 a minute, views.* 100...; chat.postMessage
  60 a minute per channel), answering HTTP 429 with Retry-After beyond it (kept in `rate_limited`);
- refuses chat.postEphemeral where the bot is not a member (PRIVATE_CHANNEL_ID), while a command's
  `response_url` (`response_url()`, posts kept in `responses`) answers anywhere, five times at most;
- keeps each view's `hash` and answers `hash_conflict` to views.update / views.publish given a stale one.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import pytest

BOT_TOKEN = "xoxb-standin-bot-token"
APP_TOKEN = "xapp-1-standin-app-token"
SIGNING_SECRET = "0123456789abcdef0123456789abcdef"
ADMIN_ID = "UADMIN001"
BOT_USER_ID = "UCREDBOT1"
CHANNEL_ID = "CGENERAL1"
PRIVATE_CHANNEL_ID = "GPRIVATE1"
"""A private channel the bot is not a member of."""
MAX_BLOCKS_JSON = 13_000
"""About where Slack answers msg_blocks_too_long (undocumented; measured near 13,300 characters)."""
RATE_WINDOW = 60.0
TIER_LIMITS = {
    "chat.update": 50,
    "chat.postEphemeral": 100,
    "views.open": 100,
    "views.push": 100,
    "views.update": 100,
    "views.publish": 100,
    "users.info": 100,
    "conversations.info": 50,
    "files.getUploadURLExternal": 20,
    "files.completeUploadExternal": 20,
}
"""Calls per RATE_WINDOW seconds per workspace (Slack's tiers 2-4)."""
PER_CHANNEL_LIMITS = {"chat.postMessage": 60}
"""Calls per RATE_WINDOW seconds per channel ("one per second, short bursts allowed")."""
RESPONSE_URL_USES = 5


T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One Web API call as received."""

    method: str
    args: dict[str, Any]
    token: str | None
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Failure:
    method: str
    error: str
    status: int
    remaining: int
    retry_after: int | None
    when: Callable[[dict[str, Any]], bool] | None


class SlackStandIn:
    """POST /api/<method>: Slack-like answers, recorded calls, scripted failures."""

    def __init__(self, token: str = BOT_TOKEN, clock: Callable[[], float] = time.monotonic) -> None:
        self.token, self.clock = token, clock
        self.calls: list[Call] = []
        self.problems: list[str] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.channels: set[str] = {CHANNEL_ID}
        """Channels the bot can post in, besides DMs (user ids and D... ids)."""
        self.home_views: dict[str, dict[str, Any]] = {}
        """The App Home view published per user (with its `hash`)."""
        self.responses: dict[str, list[dict[str, Any]]] = {}
        """What was posted to each response_url handed out, in order."""
        self.rate_limited: list[Call] = []
        """Calls answered 429: their method's tier (or channel) was spent, or a test scripted it."""
        self.limits, self.channel_limits = dict(TIER_LIMITS), dict(PER_CHANNEL_LIMITS)
        self.rate_window = RATE_WINDOW
        """Calls per `rate_window` seconds: Slack's, unless a test scales its minute down."""
        self._recent: dict[str, list[float]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        """Uploaded files by id: name, title, length, content (bytes), channel once shared."""
        self.socket_url: str | None = None
        """What apps.connections.open answers (a Socket Mode stand-in's ws:// URL)."""
        self._failures: list[_Failure] = []
        self._holds: dict[str, threading.Event] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/"

    def start(self) -> SlackStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- scripting and inspection -------------------------------------------------------------

    def fail(
        self,
        method: str,
        error: str = "internal_error",
        *,
        status: int = 200,
        times: int = 1,
        retry_after: int | None = None,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Answer the next `times` calls of `method` (matching `when`) with an error instead."""
        with self._lock:
            self._failures.append(_Failure(method, error, status, times, retry_after, when))

    def hold(self, method: str) -> threading.Event:
        """Keep calls to `method` waiting (up to 10 s) until the returned event is set."""
        event = self._holds[method] = threading.Event()
        return event

    def response_url(self) -> str:
        """A new command's response_url, served by this stand-in."""
        with self._lock:
            key = f"R{next(self._ids):06d}"
            self.responses[key] = []
        return self.url.replace("/api/", f"/response/{key}")

    def responded(self) -> list[dict[str, Any]]:
        """Everything posted to the response_urls handed out, in order of URL then post."""
        with self._lock:
            return [message for posted in self.responses.values() for message in posted]

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def wait_for(
        self, predicate: Callable[[], T | None], timeout: float = 15.0, what: str = "condition"
    ) -> T:
        """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; calls: {self.summary()}")

    def wait_for_call(self, method: str, count: int = 1, timeout: float = 15.0) -> list[Call]:
        def enough() -> list[Call] | None:
            calls = self.calls_to(method)
            return calls if len(calls) >= count else None

        return self.wait_for(
            enough,
            timeout,
            f"{count} call(s) to {method}",
        )

    def summary(self) -> list[str]:
        with self._lock:
            return [call.method for call in self.calls]

    def last_view(self) -> dict[str, Any]:
        """The view most recently opened or updated."""
        with self._lock:
            calls = [c for c in self.calls if "_view_id" in c.args]
        return self.views[calls[-1].args["_view_id"]]

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Replies posted in the thread of message `ts`."""
        with self._lock:
            return [m for (c, _), m in self.messages.items() if c == channel and m.get("thread_ts") == ts]

    # --- the server ------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                standin._handle(self)

        return Handler

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        path, _, query = handler.path.partition("?")
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if path.startswith("/upload/"):  # step 2 of files_upload_v2: the bytes, to the URL we handed out
            self._receive_upload(handler, path.rsplit("/", 1)[-1], body)
            return
        if path.startswith("/response/"):
            self._receive_response(handler, path.rsplit("/", 1)[-1], body)
            return
        method = path.rsplit("/", 1)[-1]
        raw = body.decode()
        if "json" in (handler.headers.get("Content-Type") or ""):
            args = json.loads(raw or "{}")
        else:
            args = dict(parse_qsl(raw))
        args.update(parse_qsl(query))  # slack_sdk sends some methods' arguments in the query string
        auth = handler.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.get("token")
        call = Call(method, args, token, self.clock())
        with self._lock:
            self.calls.append(call)
            failure = self._take_failure(method, args)
            held = self._holds.get(method)
        if held is not None:
            held.wait(10)
        if failure:
            if failure.status == 429:
                with self._lock:
                    self.rate_limited.append(call)
            self._reply_failure(handler, failure)
            return
        with self._lock:
            retry_after = self._spend(method, args, call.at)
            if retry_after is not None:
                self.rate_limited.append(call)
        if retry_after is not None:
            headers = {"Retry-After": str(retry_after)}
            self._reply(handler, {"ok": False, "error": "ratelimited"}, status=429, headers=headers)
            return
        expected = APP_TOKEN if method == "apps.connections.open" else self.token
        if token != expected:
            # Like Slack: no token, a token it does not know, or a known token of the wrong kind.
            error = "not_authed" if not token else "invalid_auth"
            if token in (APP_TOKEN, self.token):
                error = "not_allowed_token_type"
            self._reply(handler, {"ok": False, "error": error})
            return
        answer = getattr(self, "_" + method.replace(".", "_"), None)
        if answer is None:
            self._reply(handler, {"ok": False, "error": "unknown_method"})
            return
        with self._lock:
            self._reply(handler, answer(args))

    def _spend(self, method: str, args: dict[str, Any], now: float) -> int | None:
        """Count a call (received at `now`) against its tier; None if allowed, else Retry-After (seconds)."""
        if method in self.channel_limits:
            key, limit = f"{method}:{args.get('channel')}", self.channel_limits[method]
        elif method in self.limits:
            key, limit = method, self.limits[method]
        else:
            return None
        window = self.rate_window
        recent = [at for at in self._recent.get(key, []) if at > now - window]
        if len(recent) >= limit:
            self._recent[key] = recent
            return max(1, math.ceil(recent[0] + window - now))
        self._recent[key] = [*recent, now]
        return None

    def _take_failure(self, method: str, args: dict[str, Any]) -> _Failure | None:
        for failure in self._failures:
            if (
                failure.method == method
                and failure.remaining > 0
                and (failure.when is None or failure.when(args))
            ):
                failure.remaining -= 1
                return failure
        return None

    def _reply_failure(self, handler: BaseHTTPRequestHandler, failure: _Failure) -> None:
        if failure.status == 429:
            headers = {"Retry-After": str(failure.retry_after or 1)}
            self._reply(handler, {"ok": False, "error": "ratelimited"}, status=429, headers=headers)
        elif failure.status >= 500:
            self._reply(handler, {"ok": False, "error": failure.error}, status=failure.status)
        else:
            self._reply(handler, {"ok": False, "error": failure.error})

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler,
        body: dict[str, Any],
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    # --- methods (called with the lock held) ----------------------------------------------------------

    def _invalid(self, problems: list[str]) -> dict[str, Any]:
        self.problems.extend(problems)
        return {"ok": False, "error": "invalid_blocks", "errors": problems}

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://standin.slack.com/",
            "team": "Stand-in",
            "user": "credbot",
            "team_id": "TSTANDIN1",
            "user_id": BOT_USER_ID,
            "bot_id": "BCREDBOT1",
        }

    def _store_view(self, view: Any, view_id: str, args: dict[str, Any]) -> dict[str, Any]:
        if isinstance(view, str):
            view = json.loads(view)
        problems = check_view(view)
        if problems:
            return self._invalid(problems)
        stored = {**view, "id": view_id, "hash": f"hash-{next(self._ids)}", "state": {"values": {}}}
        self.views[view_id] = stored
        args["_view_id"] = view_id
        return {"ok": True, "view": stored}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            return {"ok": False, "error": "invalid_arguments"}
        return self._store_view(args.get("view"), f"V{next(self._ids):08d}", args)

    def _views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._views_open(args)

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = args.get("view_id")
        if view_id not in self.views:
            return {"ok": False, "error": "not_found"}
        if args.get("hash") and args["hash"] != self.views[view_id]["hash"]:
            return {"ok": False, "error": "hash_conflict"}
        return self._store_view(args.get("view"), view_id, args)

    def _can_post(self, channel: str) -> bool:
        return channel in self.channels or channel[:1] in ("U", "W", "D")

    def _post(self, args: dict[str, Any]) -> tuple[str, str] | dict[str, Any]:
        channel = str(args.get("channel", ""))
        if not self._can_post(channel):
            return {"ok": False, "error": "channel_not_found"}
        refused = self._refuse_message(args)
        if refused:
            return refused
        return channel, f"{1_700_000_000 + next(self._ids)}.000100"

    def _refuse_message(self, args: dict[str, Any]) -> dict[str, Any] | None:
        problems = check_message(args)
        if problems:
            return self._invalid(problems)
        blocks = args.get("blocks")
        size = len(blocks if isinstance(blocks, str) else json.dumps(blocks or [], separators=(",", ":")))
        if size > MAX_BLOCKS_JSON:
            self.problems.append(f"blocks: {size} characters of JSON, over {MAX_BLOCKS_JSON}")
            return {"ok": False, "error": "msg_blocks_too_long"}
        return None

    def _receive_response(self, handler: BaseHTTPRequestHandler, key: str, body: bytes) -> None:
        """A post to a response_url: JSON with text/blocks and response_type, like an incoming webhook."""
        with self._lock:
            posted = self.responses.get(key)
            try:
                message = json.loads(body or b"{}")
            except ValueError:
                message = None
            if posted is None or len(posted) >= RESPONSE_URL_USES:
                status, answer = 404, b"used_url" if posted is not None else b"no_service"
            elif not isinstance(message, dict) or check_message(message):
                status, answer = 400, b"invalid_blocks"
            else:
                posted.append(message)
                status, answer = 200, b"ok"
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(answer)))
        handler.end_headers()
        handler.wfile.write(answer)

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        posted = self._post(args)
        if isinstance(posted, dict):
            return posted
        channel, ts = posted
        # Like Slack, a message to a user id lands in the bot's DM with them, and the answer names it:
        # later calls about the message (chat.update) must use that D... id.
        answered = dm_channel(channel) if channel[:1] in ("U", "W") else channel
        self.messages[(answered, ts)] = {**args, "channel": answered, "ts": ts}
        return {"ok": True, "channel": answered, "ts": ts, "message": {"text": args.get("text"), "ts": ts}}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        user = str(args.get("user_id", ""))
        if not user.startswith(("U", "W")):
            return {"ok": False, "error": "invalid_arguments"}
        problems = check_home_view(view)
        if problems:
            return self._invalid(problems)
        assert isinstance(view, dict)  # check_home_view found it a view
        current = self.home_views.get(user)
        if args.get("hash") and (current is None or args["hash"] != current["hash"]):
            return {"ok": False, "error": "hash_conflict"}
        self.home_views[user] = {**view, "id": f"VHOME{user}", "hash": f"hash-{next(self._ids)}"}
        return {"ok": True, "view": self.home_views[user]}

    def _files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("filename") or not str(args.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._ids):010d}"
        self.files[file_id] = {"name": args["filename"], "length": int(args["length"]), "content": None}
        return {"ok": True, "upload_url": self.url.replace("/api/", f"/upload/{file_id}"), "file_id": file_id}

    def _receive_upload(self, handler: BaseHTTPRequestHandler, file_id: str, body: bytes) -> None:
        with self._lock:
            entry = self.files.get(file_id)
            if entry is None or len(body) != entry["length"]:
                handler.send_response(400)
                handler.end_headers()
                return
            entry["content"] = body
        handler.send_response(200)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"OK")

    def _files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel_id")
        if channel is not None and not re.fullmatch(r"[CGDZ][A-Z0-9]{8,}", str(channel)):
            # As Slack answers a user id here: files can only be shared in a channel or a DM's D... id.
            return {"ok": False, "error": "invalid_arguments"}
        shared = []
        for item in json.loads(args.get("files") or "[]"):
            entry = self.files.get(item.get("id"))
            if entry is None or entry["content"] is None:
                return {"ok": False, "error": "file_not_found"}
            entry.update(title=item.get("title"), channel=channel)
            shared.append({"id": item["id"], "title": item.get("title"), "name": entry["name"]})
        return {"ok": True, "files": shared}

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.socket_url is None:
            return {"ok": False, "error": "not_allowed"}
        return {"ok": True, "url": self.socket_url}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        posted = self._post(args)
        if isinstance(posted, dict):
            return posted
        return {"ok": True, "message_ts": posted[1]}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (str(args.get("channel")), str(args.get("ts")))
        if key[0][:1] in ("U", "W"):  # Slack wants the conversation (D...) id here, not a user's
            return {"ok": False, "error": "channel_not_found"}
        if key not in self.messages:
            return {"ok": False, "error": "message_not_found"}
        refused = self._refuse_message(args)
        if refused:
            return refused
        self.messages[key] = {**self.messages[key], **args}
        return {"ok": True, "channel": key[0], "ts": key[1], "text": args.get("text")}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user", ""))
        if not user.startswith(("U", "W")):
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": {"id": user, "name": user.lower(), "real_name": f"User {user}"}}

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel", ""))
        if channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "channel": {"id": channel, "name": channel.lower(), "is_member": True}}


# --- Block Kit checks -------------------------------------------------------------------------------


def _text_problems(where: str, text_object: Any, limit: int, kind: str | None = None) -> list[str]:
    if not isinstance(text_object, dict) or not isinstance(text_object.get("text"), str):
        return [f"{where}: missing text object"]
    problems = []
    if kind and text_object.get("type") != kind:
        problems.append(f"{where}: must be {kind}")
    if not text_object["text"]:
        problems.append(f"{where}: empty text")
    if len(text_object["text"]) > limit:
        problems.append(f"{where}: {len(text_object['text'])} characters, over {limit}")
    return problems


def _option_problems(where: str, options: Any, limit: int) -> list[str]:
    if not isinstance(options, list) or len(options) > limit:
        return [f"{where}: at most {limit} options"]
    problems = []
    for i, option in enumerate(options):
        problems += _text_problems(f"{where}[{i}].text", option.get("text"), 75, "plain_text")
        if not 0 < len(str(option.get("value", ""))) <= 150:
            problems.append(f"{where}[{i}].value: 1 to 150 characters")
    return problems


def check_blocks(blocks: Any, max_blocks: int) -> list[str]:
    """Problems Slack would refuse in `blocks`."""
    if not isinstance(blocks, list):
        return ["blocks: not a list"]
    problems = [] if len(blocks) <= max_blocks else [f"blocks: {len(blocks)} blocks, over {max_blocks}"]
    block_ids = [block.get("block_id") for block in blocks if block.get("block_id")]
    if len(block_ids) != len(set(block_ids)):
        problems.append("blocks: duplicate block_id")
    for i, block in enumerate(blocks):
        where, kind = f"blocks[{i}]", block.get("type")
        if kind == "section":
            problems += _text_problems(f"{where}.text", block.get("text"), 3000)
        elif kind == "header":
            problems += _text_problems(f"{where}.text", block.get("text"), 150, "plain_text")
        elif kind == "context":
            elements = block.get("elements") or []
            if not 0 < len(elements) <= 10:
                problems.append(f"{where}: 1 to 10 elements")
            for j, element in enumerate(elements):
                problems += _text_problems(f"{where}.elements[{j}]", element, 3000)
        elif kind == "input":
            problems += _text_problems(f"{where}.label", block.get("label"), 2000, "plain_text")
            element = block.get("element") or {}
            if element.get("type") in ("multi_external_select", "checkboxes"):
                options = element.get("initial_options", [])
                problems += _option_problems(f"{where}.initial_options", options, 100)
            if element.get("type") == "checkboxes":
                problems += _option_problems(f"{where}.options", element.get("options"), 10)
        elif kind == "actions":
            for j, element in enumerate(block.get("elements") or []):
                problems += _text_problems(
                    f"{where}.elements[{j}].text", element.get("text"), 75, "plain_text"
                )
        elif kind != "divider":
            problems.append(f"{where}: unexpected block type {kind!r}")
    return problems


def check_view(view: Any) -> list[str]:
    """Problems Slack would refuse in a modal view."""
    if not isinstance(view, dict) or view.get("type") != "modal":
        return ["view: not a modal"]
    problems = _text_problems("title", view.get("title"), 24, "plain_text")
    for name in ("submit", "close"):
        if name in view:
            problems += _text_problems(name, view[name], 24, "plain_text")
    if len(view.get("private_metadata", "")) > 3000:
        problems.append("private_metadata: over 3000 characters")
    if len(view.get("callback_id", "")) > 255:
        problems.append("callback_id: over 255 characters")
    has_input = any(block.get("type") == "input" for block in view.get("blocks") or [])
    if has_input and "submit" not in view:
        problems.append("submit: required with input blocks")
    return problems + check_blocks(view.get("blocks"), 100)


def check_home_view(view: Any) -> list[str]:
    """Problems Slack would refuse in an App Home view (views.publish)."""
    if not isinstance(view, dict) or view.get("type") != "home":
        return ["view: not a home view"]
    if any(name in view for name in ("title", "submit", "close")):
        return ["view: a home view has no title, submit or close"]
    return check_blocks(view.get("blocks"), 100)


def dm_channel(user_id: str) -> str:
    """The id of the bot's DM with `user_id`, as the stand-in names it."""
    return "D" + user_id[1:].ljust(8, "0")


def check_message(args: dict[str, Any]) -> list[str]:
    """Problems Slack would refuse in chat.postMessage / chat.update / chat.postEphemeral arguments."""
    text, blocks = args.get("text"), args.get("blocks")
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    if not text and not blocks:
        return ["message: needs text or blocks"]
    problems = [] if len(text or "") <= 40_000 else ["text: over 40000 characters"]
    return problems + (check_blocks(blocks, 50) if blocks is not None else [])


@pytest.fixture
def slack_standin() -> Iterator[SlackStandIn]:
    """A running Slack Web API stand-in; point SLACK_API_URL at `slack_standin.url`."""
    standin = SlackStandIn().start()
    yield standin
    standin.stop()
