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
        self._deadline = None
        self._arm(self.header_timeout)

    def data_received(self, data: bytes) -> None:
        # Where the request stands is read from uvicorn's own state after the parse, not tracked through
        # the parser's callbacks: overriding those cost a frame and a super() call each on every request.
        # uvicorn makes a new `scope` when a message begins and a `cycle` for it once its headers are in;
        # `more_body` turns False when the message is complete.
        began = self.scope
        HttpToolsProtocol.data_received(self, data)
        # Deadlines are armed once these bytes are parsed, and only for a request they left incomplete:
        # most requests arrive whole in one read and never need a timer.
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # the last request's headers are in
            if cycle.more_body:  # the body deadline is an idle timeout: any bytes extend it
                # (uvicorn leaves more_body True for a request answered before its body was in: the
                # deadline then also closes its connection once idle that long, where these very bytes
                # cancelled uvicorn's keep-alive timer.)
                self._arm(self.body_timeout)
            elif self._deadline is not None:  # complete: uvicorn's keep-alive takes over once answered
                self._disarm()
        elif cycle is not None and self.scope is not began:
            # A request began in these bytes after an earlier one on this connection: its headers get the
            # header deadline afresh (a connection's first request has the one armed when it opened).
            self._arm(self.header_timeout)

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

    def _underway(self) -> bool:
        """A request has begun whose bytes are not all in, and which is not being answered already."""
        scope, cycle = self.scope, self.cycle
        if scope is None:
            return False  # nothing received yet: an idle new connection
        if cycle is None or cycle.scope is not scope:
            return True  # its headers are incomplete
        return cycle.more_body and not cycle.response_started

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._underway():
            self.transport.write(REQUEST_TIMEOUT % (len(TIMEOUT_BODY), TIMEOUT_BODY))
        self.transport.close()


def protocol(header_timeout: float, body_timeout: float) -> type[DeadlineProtocol]:
    """A protocol class with these deadlines (uvicorn takes a class for `http`)."""
    return type("DeadlineProtocol", (DeadlineProtocol,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout})
