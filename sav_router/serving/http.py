"""uvicorn's h11 protocol with the limits uvicorn lacks: header timeout, connection cap, JSON 400s.

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) but waits forever
for a request's headers, so 300 clients sending a byte a second hold 300 sockets
(and, with a low file-descriptor limit, starve `/ping`). This subclass:

- closes a connection that has not sent complete request headers within
  `header_timeout_s` of connecting (or of its previous response);
- keeps at most `max_connections` open: beyond that, among the connections
  that are waiting for their client (no request yet, or a body still being
  sent), the one whose last byte is oldest is closed, so a new client (the
  SageMaker health check) always gets in, even past clients uploading a body at
  a byte a second (issue 18, finding 6); a request being computed is never cut;
- answers a client that half-closes after sending its request (shutdown(SHUT_WR)):
  the connection stays open for the answer. A full close looks the same from
  here, so while such a request is computed a `102 Processing` interim response
  is written every `PROBE_S`; a client that is gone makes that write fail and
  its work is cancelled as for any disconnect (clients ignore 1xx they did not
  ask for, RFC 9110 15.2);
- answers the requests h11 cannot parse (an invalid Content-Length, a bad
  request line) with the same JSON error body as the app, not plain text.

The body timeout is the app's (`app.read_body`), where the body is read.
uvicorn's `limit_concurrency` is not used: its 503 would refuse `/ping` too.
"""

from __future__ import annotations

import json
import logging
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("sav_router.serving")


PROBE_S = 1.0  # interval of the 102 probes to a half-closed client while its request is computed


class GuardedH11Protocol(H11Protocol):
    header_timeout_s: float = 10.0
    max_connections: int = 256

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = None
        self._probe = None
        self._last_byte_at = time.monotonic()
        self._arm_header_timer()
        if len(self.connections) > self.max_connections:
            waiting = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and c._waiting_for_client()]
            victim = min(waiting, key=lambda c: c._last_byte_at) if waiting else self
            victim._close("connection limit reached")

    def _idle(self) -> bool:
        """No request in flight: waiting for (the rest of) its next request's headers."""
        return self.cycle is None or self.cycle.response_complete

    def _waiting_for_client(self) -> bool:
        """Waiting for bytes from the client (headers, or a body still coming), not for the model."""
        return self._idle() or self.conn.their_state is h11.SEND_BODY

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._idle():
            self._close(f"no complete request headers within {self.header_timeout_s:g} s")

    def _close(self, why: str) -> None:
        self._disarm_header_timer()
        if not self.transport.is_closing():
            log.info("closing connection from %s: %s", self.client[0] if self.client else "?", why)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._last_byte_at = time.monotonic()
        if self._idle():
            self._arm_header_timer()
        super().data_received(data)
        if not self._idle():
            self._disarm_header_timer()  # the headers are in: the app's body timeout and deadline take over

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._last_byte_at = time.monotonic()  # the keep-alive timer runs; headers timer starts with the next byte

    def eof_received(self) -> bool | None:
        """The client will send nothing more: if its request is complete, keep the connection open to answer it."""
        if self.cycle is not None and not self.cycle.response_complete and self.conn.their_state is h11.DONE:
            self.cycle.keep_alive = False  # answer, then close
            self._probe = self.loop.call_later(PROBE_S, self._probe_client)
            return True
        return None  # nothing to answer: close, as asyncio does by default

    def _probe_client(self) -> None:
        """A 102 while the answer is computed: the write fails (and the work is cancelled) if the client is gone."""
        self._probe = None
        if self.transport.is_closing() or self.cycle is None or self.cycle.response_started:
            return
        try:
            self.transport.write(self.conn.send(h11.InformationalResponse(status_code=102, headers=[], reason=b"Processing")))
        except h11.LocalProtocolError:
            return
        self._probe = self.loop.call_later(PROBE_S, self._probe_client)

    def connection_lost(self, exc) -> None:
        self._disarm_header_timer()
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": f"invalid HTTP request: {msg.rstrip('.')}", "code": "invalid_http"}).encode("ascii")
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        try:
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # a response had already started: nothing more can be said
            pass
        self.transport.close()


def guarded_protocol(*, header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, with these limits."""
    return type("SavRouterH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": header_timeout_s, "max_connections": max_connections})
