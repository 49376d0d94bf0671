"""Uvicorn's HTTP protocol with read deadlines, so slow or idle clients cannot hold connections forever.

Uvicorn closes a keep-alive connection idle between requests (`timeout_keep_alive`), but nothing else:
a client that sends half a header, declares a body it never sends, or connects and says nothing keeps
its connection (and a file descriptor) as long as it likes. This protocol adds two deadlines:

- header deadline: the request line and headers must arrive within `header_timeout` seconds of the
  connection opening (or of the previous response ending, for the next request on it);
- body deadline: while a request body is incomplete, the client must send something at least every
  `body_timeout` seconds.

A deadline missed while a request is under way answers 408 and closes; an idle new connection is closed
without a word (as nginx does). The concurrency cap is uvicorn's own `limit_concurrency`.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                   b"connection: close\r\n\r\n%s")
TIMEOUT_BODY = (b'{"error":{"message":"The request was not received in time.","type":"invalid_request_error",'
                b'"param":null,"code":"request_timeout"}}')


class DeadlineProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 30.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._phase = "idle"  # idle -> headers -> body -> None (between requests: uvicorn's keep-alive)
        self._next_request = False  # a request began on a kept-alive connection in the bytes being parsed
        self._deadline = None
        self._arm(self.header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Deadlines are armed once these bytes are parsed, and only for a request they left incomplete:
        # most requests arrive whole in one read and never need a timer.
        if self._phase == "body":  # the body deadline is an idle timeout: any bytes extend it
            self._arm(self.body_timeout)
        elif self._phase == "headers" and self._next_request:  # the next request on a kept-alive connection
            self._arm(self.header_timeout)
        self._next_request = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._next_request = self._phase is None
        self._phase = "headers"

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._phase = "body"

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = None
        self._disarm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        answered = self.cycle is not None and self.cycle.response_started and self._phase == "body"
        if self._phase in ("headers", "body") and not answered:
            self.transport.write(REQUEST_TIMEOUT % (len(TIMEOUT_BODY), TIMEOUT_BODY))
        self.transport.close()


def protocol(header_timeout: float, body_timeout: float) -> type[DeadlineProtocol]:
    """A protocol class with these deadlines (uvicorn takes a class for `http`)."""
    return type("DeadlineProtocol", (DeadlineProtocol,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout})
