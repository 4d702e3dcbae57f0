"""A Socket Mode stand-in: a websocket server on 127.0.0.1 speaking Slack's envelope protocol.

Slack's side of Socket Mode, as documented (docs.slack.dev/apis/events-api/using-socket-mode): the app
calls `apps.connections.open` with its app-level token (the Web API stand-in answers with this
server's ws:// URL), connects, and is greeted with `{"type": "hello", ...}`. Each request then arrives
as an envelope `{"envelope_id", "type": "slash_commands" | "interactive" | "events_api", "payload",
"accepts_response_payload"}`, and the app must acknowledge it by sending back `{"envelope_id"}` (with a
`payload` when it answers, e.g. a view submission's `response_action`) within 3 seconds.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

APP_ID = "ACREDBOT1"


class SocketModeStandIn:
    """Accepts app connections, sends envelopes to the newest one, and records the acks."""

    def __init__(self) -> None:
        self.acks: dict[str, dict[str, Any]] = {}
        """Acknowledgements received, by envelope id."""
        self.hellos = 0
        self.unexpected: list[str] = []
        """Messages from the app that are not acks of an envelope we sent."""
        self._sent: dict[str, float] = {}
        self._connections: list[ServerConnection] = []
        self._lock = threading.Lock()
        self._server: Server = serve(self._serve, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/link/?ticket={uuid.uuid4()}&app_id={APP_ID}"

    def start(self) -> SocketModeStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def _serve(self, connection: ServerConnection) -> None:
        with self._lock:
            self._connections.append(connection)
        connection.send(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "standin", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": APP_ID},
                }
            )
        )
        with self._lock:
            self.hellos += 1
        try:
            for raw in connection:
                message = json.loads(raw)
                envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
                with self._lock:
                    if envelope_id in self._sent and envelope_id not in self.acks:
                        self.acks[envelope_id] = {
                            **message,
                            "after": time.monotonic() - self._sent[envelope_id],
                        }
                    else:
                        self.unexpected.append(str(raw))
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._connections.remove(connection)

    def wait_connected(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._connections and self.hellos:
                    return
            time.sleep(0.05)
        raise AssertionError("the app never connected over Socket Mode")

    def send(self, kind: str, payload: dict[str, Any], accepts_response_payload: bool = True) -> str:
        """Send an envelope of `kind` to the connected app; its envelope id."""
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if kind == "events_api":
            envelope.update(retry_attempt=0, retry_reason="")
        with self._lock:
            connection = self._connections[-1]
            self._sent[envelope_id] = time.monotonic()
        connection.send(json.dumps(envelope))
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if envelope_id in self.acks:
                    return self.acks[envelope_id]
            time.sleep(0.02)
        raise AssertionError(f"envelope {envelope_id} was not acknowledged within {timeout}s")
