"""Just enough of a server-sent events client for opencode's `GET /global/event`: one connection, read by a thread
of its own into a queue, so the thread that acts on the events can also wait for timers; closing it ends the read."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import socket
import threading
import urllib.parse
from typing import Any

READ_TIMEOUT = 30.0  # s: opencode sends a heartbeat every 10 s; a quieter stream is dead
ENDED = None  # put on the queue when the stream ends
WANTED = {
    "session.created",
    "session.updated",
    "session.deleted",
    "session.status",
    "session.idle",
    "message.updated",
    "question.asked",
    "permission.asked",
}


class StreamError(RuntimeError):
    """The stream could not be opened."""


class EventStream:
    """`events` gets each wanted event (parsed JSON) as it comes, then ENDED once the stream is over."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=READ_TIMEOUT)
        self.path = parts.path or "/"
        self.events: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.sock: socket.socket | None = None

    def open(self) -> None:
        """Connect and start reading; raises StreamError (or OSError) when opencode does not answer with a stream."""
        self.connection.connect()
        self.sock = self.connection.sock  # the response may take it over: kept to end the read with
        self.connection.request("GET", self.path, headers={"Accept": "text/event-stream"})
        response = self.connection.getresponse()
        if response.status != 200:
            raise StreamError(f"{self.path} answered {response.status}")
        threading.Thread(target=self._read, args=(response,), name="events", daemon=True).start()

    def _read(self, response: http.client.HTTPResponse) -> None:
        data: list[bytes] = []
        try:
            for line in response:
                line = line.rstrip(b"\r\n")
                if line.startswith(b"data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    event = json.loads(b"\n".join(data))
                    data = []
                    if ((event.get("payload") or {}).get("type")) in WANTED:
                        self.events.put(event)
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the stream ended; the watcher connects again
        finally:
            self.events.put(ENDED)

    def close(self) -> None:
        """End the read at once (a thread blocked on the socket wakes up) and drop the connection."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        self.connection.close()
