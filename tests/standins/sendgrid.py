"""A SendGrid v3 Mail Send stand-in: a real threaded HTTP server on 127.0.0.1 that checks requests.

Tests script its answers (`answer(...)`): a status for the next N calls, or for calls to one address,
optionally hanging past the client's timeout (and then accepting: "accepted, but answered late"),
dripping the answer one byte at a time, or dropping the connection without an answer after accepting;
every accepted message is kept in `messages`.

Like SendGrid, it speaks HTTP/1.1 and keeps connections alive between requests (`connections` counts
them; `close_idle_connections()` closes the idle ones, as a load balancer does after a while).

Like SendGrid, it answers 202 to a message whose recipient name holds an unquoted `,` or `;` (or a
control character) and then drops it: such a message goes to `dropped`, never to `messages`.
`events()` gives the Event Webhook events SendGrid would post for what it accepted (processed, then
delivered, dropped, or a bounce scripted with `bounce(...)`).

Like SendGrid, it keeps suppression lists: an address that bounced goes on the bounce list (a block on
the block list, which suppresses nothing), and every later message to an address on the bounce or spam
list is dropped ("Bounced Address", "Spam Reporting Address") unless the message sets
`mail_settings.bypass_bounce_management` (bounces only) or the address was removed from the list
(`DELETE /v3/suppression/bounces/{email}`). `GET /v3/suppression/{bounces,blocks,spam_reports}/{email}`
answer what is listed, or 403 when the key lacks the Suppressions permission (`scopes`).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

API_KEY = "SG.standin-key.0123456789"
SUPPRESSION_LISTS = ("bounces", "blocks", "spam_reports")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 resets connections when 32 senders connect at once
    lock: threading.Lock
    connections = 0
    """Connections accepted so far (each a thread of its own, kept alive between requests)."""
    open_sockets: set[socket.socket]
    idle_sockets: set[socket.socket]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections += 1
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.open_sockets.discard(request)
            self.idle_sockets.discard(request)
        super().shutdown_request(request)


@dataclass
class _Rule:
    status: int
    remaining: int | None  # None: forever
    to: str | None
    category: str | None
    hang: bool
    errors: list[dict[str, Any]] | None
    reset_in: float | None
    drip: bool = False
    drop: bool = False


@dataclass(frozen=True)
class Request:
    """One call received, whatever was answered."""

    to: list[str]
    status: int
    at: float


class SendGridStandIn:
    """POST /v3/mail/send: 202 + X-Message-Id for a valid request, or what a test scripted."""

    def __init__(self, api_key: str = API_KEY, delay: float = 0.0, hang_seconds: float = 5.0) -> None:
        self.api_key = api_key
        self.delay = delay
        self.hang_seconds = hang_seconds
        self.drip_seconds = 0.25
        """Pause between two bytes of a dripped answer."""
        self.messages: list[dict[str, Any]] = []
        """Accepted request bodies, with the id answered under the key `message_id`."""
        self.requests: list[Request] = []
        self.invalid: list[list[str]] = []
        """Problems found in bodies that were refused as invalid (a test normally expects none)."""
        self.dropped: list[dict[str, Any]] = []
        """Bodies answered 202 and then dropped (a recipient name SendGrid cannot parse)."""
        self._bounces: dict[str, tuple[str, str, str]] = {}
        self.suppressions: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in SUPPRESSION_LISTS}
        """Per list (`bounces`, `blocks`, `spam_reports`), the addresses on it with SendGrid's record."""
        self.scopes = {"mail.send", "suppression.read", "suppression.delete"}
        """What the API key may do (SendGrid's permission scopes)."""
        self.suppression_calls: list[tuple[str, str]] = []
        """(method, path) of every Suppressions API call."""
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.lock = self._lock
        self._server.open_sockets = set()
        self._server.idle_sockets = set()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SendGridStandIn:
        self._thread.start()
        return self

    @property
    def connections(self) -> int:
        """How many connections clients opened so far."""
        with self._lock:
            return self._server.connections

    def close_idle_connections(self) -> int:
        """Close every kept-alive connection waiting for its next request, as SendGrid's load balancers
        do after a while; return how many. A client that sends on one sees it closed without answer."""
        with self._lock:
            idle = list(self._server.idle_sockets)
            self._server.idle_sockets.clear()
        for sock in idle:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return len(idle)

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        with self._lock:
            kept = list(self._server.open_sockets)
        for sock in kept:  # end the kept-alive connections' threads too
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()

    def answer(
        self,
        status: int = 202,
        *,
        times: int | None = 1,
        to: str | None = None,
        category: str | None = None,
        hang: bool = False,
        errors: list[dict[str, Any]] | None = None,
        reset_in: float | None = None,
        drip: bool = False,
        drop: bool = False,
    ) -> None:
        """Answer the next `times` calls (None: all) with `status`, only those to `to` / in `category`.

        `hang` sleeps `hang_seconds` before answering; `errors` is SendGrid's `errors` list (a default
        one is made up for 4xx/5xx); `reset_in` sets X-RateLimit-Reset to now + `reset_in` seconds.
        With a 2xx status, `drip` sends the answer one byte every `drip_seconds`, and `drop` closes the
        connection without answering; both after accepting the message.
        """
        rule = _Rule(status, times, to and to.lower(), category, hang, errors, reset_in, drip, drop)
        with self._lock:
            self._rules.append(rule)

    def clear_answers(self) -> None:
        """Forget every scripted answer: valid requests get 202 again."""
        with self._lock:
            self._rules.clear()

    def sent_to(self, address: str) -> list[dict[str, Any]]:
        """The accepted messages to `address`, oldest first."""
        address = address.lower()
        with self._lock:
            return [m for m in self.messages if address in _recipients(m)]

    def _take_rule(self, recipients: list[str], categories: list[str]) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.to is not None and rule.to not in recipients:
                    continue
                if rule.category is not None and rule.category not in categories:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                return rule
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test output is not the place for access logs."""

            def handle_one_request(self) -> None:
                with standin._lock:
                    standin._server.idle_sockets.add(self.connection)
                super().handle_one_request()

            def parse_request(self) -> bool:
                with standin._lock:  # the request line came: the connection is no longer idle
                    standin._server.idle_sockets.discard(self.connection)
                return super().parse_request()

            def do_POST(self) -> None:
                standin._handle(self)

            def do_GET(self) -> None:
                standin._handle(self)

            def do_DELETE(self) -> None:
                standin._handle(self)

        return Handler

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        if self.delay:
            time.sleep(self.delay)
        if handler.path.startswith("/v3/suppression/"):
            return self._suppression(handler)
        if handler.path != "/v3/mail/send":
            return self._reply(handler, 404, [], errors=[{"message": "Not found", "field": None}])
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._reply(handler, 401, [], errors=[{"message": "Permission denied, wrong credentials"}])
        try:
            body = json.loads(raw)
        except ValueError:
            return self._reply(handler, 400, [], errors=[{"message": "Bad Request", "field": None}])
        recipients = _recipients(body) if isinstance(body, dict) else []
        problems = validate_mail_send(body, handler.headers.get("Content-Type", ""))
        if problems:
            with self._lock:
                self.invalid.append(problems)
            return self._reply(handler, 400, recipients, errors=[{"message": p} for p in problems])
        rule = self._take_rule(recipients, body.get("categories") or [])
        if rule is not None:
            if rule.hang:
                self._release.wait(self.hang_seconds)
            if rule.status not in (200, 202):
                return self._reply(handler, rule.status, recipients, rule.errors, rule.reset_in)
        sandbox = bool(body.get("mail_settings", {}).get("sandbox_mode", {}).get("enable"))
        message_id = uuid.uuid4().hex[:22]
        with self._lock:
            if any(unparsable_name(to.get("name")) for to in _tos(body)):
                self.dropped.append({**body, "message_id": message_id})
            else:
                self.messages.append({**body, "message_id": message_id})
        if rule is not None and rule.drop:  # accepted, then the connection is lost before the answer
            with self._lock:
                self.requests.append(Request(recipients, 0, time.time()))
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return None
        if rule is not None and rule.drip:
            return self._reply(handler, 202, recipients, headers={"X-Message-Id": message_id}, drip=True)
        if sandbox:  # SendGrid validates but delivers nothing, and answers 200 without an id
            return self._reply(handler, 200, recipients)
        return self._reply(handler, 202, recipients, headers={"X-Message-Id": message_id})

    def _reply(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        recipients: list[str],
        errors: list[dict[str, Any]] | None = None,
        reset_in: float | None = None,
        headers: dict[str, str] | None = None,
        drip: bool = False,
        body: bytes = b"",
        record: bool = True,
    ) -> None:
        if record:  # Mail Send calls; the Suppressions API's are in `suppression_calls`
            with self._lock:
                self.requests.append(Request(recipients, status, time.time()))
        if drip:
            return self._drip(handler, status, headers or {})
        headers = dict(headers or {})
        if status >= 400:
            errors = errors or [{"message": f"stand-in error {status}", "field": None, "help": None}]
            body = json.dumps({"errors": errors}).encode()
            headers["Content-Type"] = "application/json"
        if status == 429:
            headers["X-RateLimit-Reset"] = str(int(time.time() + (reset_in or 0)))
        try:
            handler.send_response(status)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout): nothing to answer to

    def _drip(self, handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str]) -> None:
        """The whole answer, one byte at a time: a client that bounds each read only never ends."""
        lines = [
            f"HTTP/1.1 {status} Accepted",
            *(f"{k}: {v}" for k, v in headers.items()),
            "Content-Length: 0",
        ]
        answer = ("\r\n".join(lines) + "\r\n\r\n").encode()
        try:
            for index in range(len(answer)):
                handler.wfile.write(answer[index : index + 1])
                handler.wfile.flush()
                if self._release.wait(self.drip_seconds):
                    return
        except OSError:
            pass  # the client gave up

    def _suppression(self, handler: BaseHTTPRequestHandler) -> None:
        """GET or DELETE /v3/suppression/{list}/{email}, as SendGrid answers them."""
        with self._lock:
            self.suppression_calls.append((handler.command, handler.path))
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._reply(
                handler, 401, [], errors=[{"message": "Permission denied, wrong credentials"}], record=False
            )
        _, _, _, name, quoted = (handler.path.split("?")[0].split("/", 4) + [""] * 5)[:5]
        address = urllib.parse.unquote(quoted).lower()
        scope = "suppression.read" if handler.command == "GET" else "suppression.delete"
        deletable = handler.command == "GET" or name == "bounces"
        if name not in SUPPRESSION_LISTS or not address or not deletable:
            return self._reply(
                handler, 404, [], errors=[{"message": "Not found", "field": None}], record=False
            )
        if scope not in self.scopes:
            return self._reply(
                handler, 403, [], errors=[{"field": None, "message": "access forbidden"}], record=False
            )
        with self._lock:
            listed = self.suppressions[name]
            if handler.command == "DELETE":
                listed.pop(address, None)
                return self._reply(handler, 204, [], record=False)
            body = json.dumps([listed[address]] if address in listed else []).encode()
        return self._reply(
            handler, 200, [], headers={"Content-Type": "application/json"}, body=body, record=False
        )

    def suppress(self, address: str, name: str = "bounces", reason: str = "550 5.1.1 user unknown") -> None:
        """Put `address` on a suppression list, as SendGrid does after a bounce, block or spam report."""
        with self._lock:
            self._suppress(address.lower(), name, reason)

    def _suppress(self, address: str, name: str, reason: str) -> None:
        record = {"created": int(time.time()), "email": address, "reason": reason, "status": "5.1.1"}
        self.suppressions[name][address] = record

    def create_mailbox(self, address: str) -> None:
        """The recipient's mailbox now exists: later mail is delivered (unless SendGrid suppresses it)."""
        with self._lock:
            self._bounces.pop(address.lower(), None)

    def bounce(self, address: str, reason: str, status: str = "5.1.1", kind: str = "bounce") -> None:
        """Make `events()` report messages to `address` as bounced (`kind="blocked"`: blocked)."""
        with self._lock:
            self._bounces[address.lower()] = (reason, status, kind)

    def events(self, start: float | None = None) -> list[dict[str, Any]]:
        """The Event Webhook events for every message accepted so far, as SendGrid posts them.

        Each message gets `processed`, then `delivered`, `dropped` or `bounce`: dropped with "Invalid" for a
        recipient name SendGrid split into bad addresses, or "Bounced Address" / "Spam Reporting Address"
        when a suppression list held the address as the message came (see the module docstring). Each
        message's fate is decided once, in the order accepted, and kept. Custom args come back as
        top-level keys.
        """
        at = int(start if start is not None else time.time())
        with self._lock:
            accepted = [(m, False) for m in self.messages] + [(m, True) for m in self.dropped]
            fates = [(body, self._fate(body, dropped)) for body, dropped in accepted]
        events = []
        for body, fate in fates:
            for address in _recipients(body):
                common = {
                    "email": address,
                    "timestamp": at,
                    "smtp-id": f"<{body['message_id']}@standin>",
                    "sg_message_id": f"{body['message_id']}.filter0001.16648.5515E0B88.0",
                    "category": body.get("categories") or [],
                    **body.get("custom_args", {}),
                }
                events.append({**common, "event": "processed", "sg_event_id": uuid.uuid4().hex})
                events.append({**common, **fate, "timestamp": at + 1, "sg_event_id": uuid.uuid4().hex})
        return events

    def _fate(self, body: dict[str, Any], dropped: bool) -> dict[str, Any]:
        """What became of a message (decided the first time, under the lock, then kept in `body`)."""
        if "_fate" in body:
            return dict(body["_fate"])
        address = (_recipients(body) or [""])[0]
        bypass = bool(body.get("mail_settings", {}).get("bypass_bounce_management", {}).get("enable"))
        fate: dict[str, Any]
        if dropped:
            fate = {"event": "dropped", "reason": "Invalid"}
        elif address in self.suppressions["bounces"] and not bypass:
            fate = {"event": "dropped", "reason": "Bounced Address"}
        elif address in self.suppressions["spam_reports"]:
            fate = {"event": "dropped", "reason": "Spam Reporting Address"}
        elif address in self._bounces:
            reason, status, kind = self._bounces[address]
            fate = {"event": "bounce", "type": kind, "reason": reason, "status": status}
            self._suppress(address, "blocks" if kind == "blocked" else "bounces", reason)
        else:
            fate = {"event": "delivered", "response": "250 OK"}
        body["_fate"] = fate
        return dict(fate)


def unparsable_name(name: Any) -> bool:
    """True for a recipient name SendGrid splits into addresses: an unquoted `,` or `;`, or a control
    character (RFC 5322 lets a quoted-string hold `,` and `;`, with `\\` escaping the next character)."""
    if not isinstance(name, str):
        return False
    quoted = escaped = False
    for char in name:
        if ord(char) < 32 or ord(char) == 127:
            return True
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char in ",;" and not quoted:
            return True
    return False


def _tos(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        to
        for p in body.get("personalizations") or []
        if isinstance(p, dict)
        for to in p.get("to") or []
        if isinstance(to, dict)
    ]


def _recipients(body: dict[str, Any]) -> list[str]:
    return [
        str(to.get("email", "")).lower()
        for p in body.get("personalizations") or []
        if isinstance(p, dict)
        for to in p.get("to") or []
        if isinstance(to, dict)
    ]


def validate_mail_send(body: Any, content_type: str) -> list[str]:
    """What is wrong with a v3 Mail Send request body (empty when valid), like SendGrid checks it."""
    if not content_type.startswith("application/json"):
        return [f"Content-Type must be application/json, not {content_type!r}"]
    if not isinstance(body, dict):
        return ["the body must be a JSON object"]
    problems = []
    sender = body.get("from")
    if not isinstance(sender, dict) or "@" not in str(sender.get("email", "")):
        problems.append("from.email is required and must be an address")
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.append("personalizations must be a non-empty list")
        personalizations = []
    for p in personalizations:
        tos = p.get("to") if isinstance(p, dict) else None
        if not isinstance(tos, list) or not tos:
            problems.append("personalizations[].to must be a non-empty list")
        elif not all(isinstance(t, dict) and "@" in str(t.get("email", "")) for t in tos):
            problems.append("personalizations[].to[].email must be an address")
        if not body.get("subject") and not (isinstance(p, dict) and p.get("subject")):
            problems.append("subject is required")
    content = body.get("content")
    if not isinstance(content, list) or not content:
        problems.append("content must be a non-empty list")
        content = []
    types = [c.get("type") if isinstance(c, dict) else None for c in content]
    if any(not (isinstance(c, dict) and isinstance(c.get("value"), str) and c["value"]) for c in content):
        problems.append("content[].value must be a non-empty string")
    if types[:1] != ["text/plain"] or "text/html" not in types:
        problems.append("content must start with text/plain and include text/html")
    custom_args = body.get("custom_args", {})
    if not isinstance(custom_args, dict) or not all(isinstance(v, str) for v in custom_args.values()):
        problems.append("custom_args must map names to strings")
    categories = body.get("categories", [])
    if (
        not isinstance(categories, list)
        or len(categories) > 10
        or not all(isinstance(c, str) and 0 < len(c) <= 255 for c in categories)
    ):
        problems.append("categories must be at most 10 strings of at most 255 characters")
    sandbox = body.get("mail_settings", {}).get("sandbox_mode", {}).get("enable", False)
    if not isinstance(sandbox, bool):
        problems.append("The sandbox mode enable param should be a boolean value.")
    settings = body.get("mail_settings", {})
    for name in ("bypass_bounce_management", "bypass_list_management"):
        if not isinstance(settings.get(name, {}).get("enable", False), bool):
            problems.append(f"The {name} enable param should be a boolean value.")
    others = ("bounce", "spam", "unsubscribe")
    if settings.get("bypass_list_management", {}).get("enable") and any(
        settings.get(f"bypass_{name}_management", {}).get("enable") for name in others
    ):
        problems.append("bypass_list_management cannot be combined with the other bypass filters")
    tracking = body.get("tracking_settings", {})
    for name in ("click_tracking", "open_tracking", "subscription_tracking"):
        enable = tracking.get(name, {}).get("enable", False) if isinstance(tracking, dict) else None
        if not isinstance(enable, bool):
            problems.append(f"The {name} enable param should be a boolean value.")
    return problems


@pytest.fixture
def sendgrid_standin() -> Iterator[SendGridStandIn]:
    """A running SendGrid stand-in; point SENDGRID_API_HOST at `.url` and use `.api_key`."""
    standin = SendGridStandIn().start()
    yield standin
    standin.stop()


def main() -> None:
    """Serve a stand-in until stdin closes: `python -m tests.standins.sendgrid [--delay S]` (for bench/)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    standin = SendGridStandIn(delay=args.delay).start()
    print(standin.url, flush=True)
    sys.stdin.read()
    print(f"accepted={len(standin.messages)} invalid={len(standin.invalid)}", flush=True)
    standin.stop()


if __name__ == "__main__":
    main()
