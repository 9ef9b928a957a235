"""The API's gunicorn worker: gthread, with slow clients kept off the threads.

gunicorn's gthread worker hands a connection to a pool thread as soon as its
first bytes arrive; the thread then reads the rest of the request head with a
blocking read. A client that sends a header line every few seconds holds that
thread for as long as it likes, and a few hundred such clients hold them all
(``/healthz`` stopped answering at 520 slow sockets against 2 x 256 threads).

``JobgateWorker`` (``jobgate web`` runs it) changes three things:

* **A connection reaches a thread only with a complete request head.** Until
  its blank line has arrived, the main loop reads what the client sends
  (non-blocking, on the poller's readable events) into a buffer that is handed
  to gunicorn's parser with the connection. The same holds for a kept-alive
  connection's next request, and for bytes pipelined behind a request.
* **Bounds:** a head must be complete within ``JOBGATE_HEADER_TIMEOUT`` seconds
  of its first byte being awaited (else 408 and close, or a silent close when
  nothing came); one client address holds at most
  ``JOBGATE_MAX_CONNECTIONS_PER_CLIENT`` connections per worker process (the
  next one is answered 503 and closed at once).
* **Answers sent before the body was read close the connection.** A response
  that starts while more of the request body is unread than gunicorn drains
  afterwards (64 KiB), e.g. a 413 for a declared 3 MiB body, says
  ``Connection: close`` and closes, instead of announcing keep-alive and then
  closing under the client's next request.

Every error gunicorn itself answers (malformed request 400, request line too
long 414, header section too large 431, head timeout 408, ...) is
``application/problem+json`` like the application's own errors.
"""

from __future__ import annotations

import contextlib
import errno
import json
import selectors
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from gunicorn import glogging, http, util
from gunicorn.http import body as gunicorn_body
from gunicorn.http import parser as gunicorn_parser
from gunicorn.http import wsgi as gunicorn_wsgi
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import TConn, ThreadWorker

from workers import logs
from workers.config import Settings

PROBLEM_TYPE = "urn:jobgate:problem:{code}"  # as app/errors.py

# The longest request line Jobgate's contract needs: GET /v1/jobs/results with
# 100 ids of 64 characters, comma-separated (99 commas, %2C-encoded: 3 bytes
# each) is 25 + 6,400 + 297 + 9 = 6,731 bytes. gunicorn's own cap is 8,190.
LIMIT_REQUEST_LINE = 8190

# A request head (request line and headers) is at most this long (else 431).
MAX_HEAD_BYTES = 64 * 1024

# How long, and how much, a closing connection is read from after its answer
# (gunicorn's own figures for its graceful close).
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024

# What gunicorn drains of an unread body before reusing a connection.
DRAIN_MAX_BYTES: int = getattr(gunicorn_parser, "_DRAIN_MAX_BYTES", 64 * 1024)

CODES = {
    400: "BAD_REQUEST",
    403: "FORBIDDEN",
    408: "REQUEST_TIMEOUT",
    413: "PAYLOAD_TOO_LARGE",
    414: "URI_TOO_LONG",
    417: "EXPECTATION_FAILED",
    431: "HEADERS_TOO_LARGE",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "TOO_MANY_CONNECTIONS",
}

DETAILS = {
    408: "The request head did not arrive in time.",
    414: "The request line is longer than {line} bytes.",
    431: "The request's header section is too large (at most 8,190 bytes a line, 64 KiB in all).",
    500: "An unexpected error occurred.",
    503: "This client has too many open connections; close some and retry.",
}


def problem_bytes(status: int, reason: str, detail: str, extra_headers: str = "") -> bytes:
    """A complete HTTP/1.1 problem+json response that closes the connection."""
    code = CODES.get(status, "HTTP_ERROR")
    body = json.dumps(
        {
            "type": PROBLEM_TYPE.format(code=code),
            "title": reason,
            "status": status,
            "detail": detail,
            "code": code,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra_headers}\r\n"
    )
    return head.encode("latin-1") + body


def _send_nonblocking(sock: socket.socket, data: bytes) -> None:
    """Best effort, never blocks: a fresh socket's send buffer takes a few KiB."""
    try:
        sock.setblocking(False)
        sock.send(data)
    except OSError:
        pass


class _Capture:
    """Stands in for the client socket while gunicorn writes its HTML error."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.data += data


def _client_key(addr: Any) -> str:
    return str(addr[0]) if isinstance(addr, tuple) and addr else str(addr or "")


class Conn(TConn):  # type: ignore[misc]
    """A connection that knows its client's slot, its unfinished request head,
    and how to close without blocking the main loop."""

    def __init__(
        self,
        cfg: Any,
        sock: socket.socket,
        client: Any,
        server: Any,
        release: Callable[[], None],
        linger: Callable[[Conn], None],
    ) -> None:
        super().__init__(cfg, sock, client, server)
        self.head = bytearray()
        self.head_deadline: float | None = None
        self.heading = False  # registered in the poller, waiting for its head
        self.linger_deadline = 0.0
        self.drained = 0
        self._release: Callable[[], None] | None = release
        self._linger = linger

    def close(self, graceful: bool = False) -> None:
        # gunicorn's graceful close lingers up to 2 s in a blocking read, on
        # the main loop: 20 clients that never close stalled every request
        # for 30 s. Here the lingering happens in the poller.
        if graceful and not self.cfg.is_ssl and self._release is not None:
            self._linger(self)
            return
        release, self._release = self._release, None
        if release is not None:
            release()
        super().close(False)


class JobgateWorker(ThreadWorker):  # type: ignore[misc]
    """gthread where a thread only ever waits for the application, never a client."""

    wsgi: Callable[..., Iterable[bytes]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = Settings.from_env()
        self.header_timeout = settings.header_timeout
        self.max_per_client = settings.max_connections_per_client
        self.per_client: Counter[str] = Counter()
        self.refused = 0
        self.next_refusal_log = 0.0
        # Connections waiting for their head, oldest (= first to expire) first.
        self.heads: dict[Conn, None] = {}
        # Closed for writing, reading what the client still sends until it closes.
        self.lingering: dict[Conn, None] = {}
        line = self.cfg.limit_request_line or LIMIT_REQUEST_LINE
        self.max_line = line + 2
        # Past this much without its blank line, a head is refused (431). The
        # parser's own bound (100 fields x 8 KiB) is 800 KiB: held by up to
        # 1,000 waiting connections, too much memory.
        self.max_head = MAX_HEAD_BYTES

    def handle_exit(self, sig: Any, frame: Any) -> None:
        """SIGTERM: a graceful shutdown, which open event streams would hold
        for the whole graceful timeout; they end at their next tick instead."""
        super().handle_exit(sig, frame)
        from app.events import CLOSING  # noqa: PLC0415 - the app is loaded by now

        CLOSING.set()

    # -- the WSGI application: close when the body was left unread ----------

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = partial(_close_if_body_unread, self.wsgi)

    # -- accepting: one client's share --------------------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        key = _client_key(client_addr)
        if self.max_per_client and self.per_client[key] >= self.max_per_client:
            self.refused += 1
            now = time.monotonic()
            if now >= self.next_refusal_log:  # one line per 10 s, not one per connection
                self.next_refusal_log = now + 10
                self.log.warning(
                    "Refused %d connection(s), the last from %s: %d open "
                    "(JOBGATE_MAX_CONNECTIONS_PER_CLIENT)",
                    self.refused,
                    key,
                    self.per_client[key],
                )
                self.refused = 0
            _send_nonblocking(
                client_sock,
                problem_bytes(503, "Service Unavailable", DETAILS[503], "Retry-After: 1\r\n"),
            )
            client_sock.close()
            return
        self.nr_conns += 1
        self.per_client[key] += 1
        conn = Conn(
            self.cfg,
            client_sock,
            client_addr,
            listener.getsockname(),
            partial(self._release, key),
            self._linger,
        )
        self.enqueue_req(conn)

    def _release(self, key: str) -> None:
        self.per_client[key] -= 1
        if self.per_client[key] <= 0:
            del self.per_client[key]

    # -- request heads: read in the main loop, never in a thread ------------

    def enqueue_req(self, conn: TConn) -> None:
        """Every path to a thread (new, kept-alive, pipelined) passes here."""
        if (
            not isinstance(conn, Conn)
            or self.cfg.is_ssl
            or conn.is_http2
            or negotiation.prior_knowledge_allowed(self.cfg, conn.client)
        ):  # TLS and HTTP/2 (unused by Jobgate): gunicorn's own way
            super().enqueue_req(conn)
            return
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        # Bytes read ahead behind the previous request start this head.
        if conn.parser.unreader.buf.getbuffer().nbytes:
            conn.head += conn.parser.unreader.take_buffered()
        if conn.head_deadline is None:
            conn.head_deadline = time.monotonic() + self.header_timeout
        if conn.sock.gettimeout() != 0.0:  # not yet non-blocking (no system call)
            conn.sock.setblocking(False)
        self._read_head(conn, searched=0)

    def _on_head_readable(self, conn: Conn, _sock: socket.socket) -> None:
        self._read_head(conn, searched=max(0, len(conn.head) - 3))

    def _read_head(self, conn: Conn, searched: int) -> None:
        while not self._head_complete(conn.head, searched):
            refusal = self._head_refused(conn.head)
            if refusal is not None:
                self._refuse_head(conn, *refusal)
                return
            searched = max(0, len(conn.head) - 3)
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                self._park(conn)
                return
            except OSError:
                self._drop(conn)
                return
            if not data:  # the client went away
                self._drop(conn)
                return
            conn.head += data
        self._unpark(conn)
        conn.parser.unreader.unread(bytes(conn.head))
        conn.head = bytearray()
        conn.head_deadline = None
        conn.data_ready = True
        super().enqueue_req(conn)

    @staticmethod
    def _head_complete(head: bytearray, searched: int) -> bool:
        return head.find(b"\r\n\r\n", searched) >= 0 or head.find(b"\n\n", searched) >= 0

    def _head_refused(self, head: bytearray) -> tuple[int, str] | None:
        """An unfinished head that can never be accepted is answered at once,
        in the event loop (a thread given it would wait for the rest)."""
        if len(head) > self.max_line and b"\n" not in head[: self.max_line]:
            return 414, "URI Too Long"
        if len(head) > self.max_head:
            return 431, "Request Header Fields Too Large"
        return None

    def _refuse_head(self, conn: Conn, status: int, reason: str) -> None:
        self.log.warning("Invalid request from ip=%s: %s", _client_key(conn.client), reason.lower())
        detail = DETAILS[status].format(line=self.max_line - 2)
        self._drop(conn, problem_bytes(status, reason, detail))

    def _park(self, conn: Conn) -> None:
        if not conn.heading:
            conn.heading = True
            self.heads[conn] = None
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self._on_head_readable, conn)
            )

    def _unpark(self, conn: Conn) -> None:
        if conn.heading:
            conn.heading = False
            self.heads.pop(conn, None)
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.poller.unregister(conn.sock)

    def _drop(self, conn: Conn, answer: bytes = b"") -> None:
        self._unpark(conn)
        if answer:
            _send_nonblocking(conn.sock, answer)
        self.nr_conns -= 1
        conn.close(graceful=bool(answer))

    # -- closing: RFC 9112 section 9.6, without blocking ---------------------

    def _linger(self, conn: Conn) -> None:
        """Send FIN, then discard what the client still sends until it closes
        (else unread bytes would make the kernel reset the connection and
        truncate the answer), at most LINGER_SECONDS and LINGER_BYTES."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            conn.linger_deadline = time.monotonic() + LINGER_SECONDS
            conn.drained = 0
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._drain, conn))
        except (OSError, KeyError, ValueError):
            conn.close()
            return
        self.lingering[conn] = None

    def _drain(self, conn: Conn, _sock: socket.socket) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained >= LINGER_BYTES:
            self._end_linger(conn)

    def _end_linger(self, conn: Conn) -> None:
        self.lingering.pop(conn, None)
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.poller.unregister(conn.sock)
        conn.close()

    def murder_pending(self) -> None:
        """gunicorn's expiry of idle connections, plus heads past their time
        and lingering closes past theirs."""
        super().murder_pending()
        now = time.monotonic()
        while self.lingering:
            conn = next(iter(self.lingering))
            if conn.linger_deadline > now:
                break
            self._end_linger(conn)
        while self.heads:
            conn = next(iter(self.heads))
            if conn.head_deadline is not None and conn.head_deadline > now:
                break
            # Nothing at all came: just close, as gunicorn does with idle ones.
            answer = problem_bytes(408, "Request Timeout", DETAILS[408]) if conn.head else b""
            self._drop(conn, answer)

    # -- gunicorn's own errors, as problem+json ------------------------------

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        # gunicorn chooses the status and logs; only its HTML body is replaced.
        captured = _Capture()
        super().handle_error(req, captured, addr, exc)
        status_line = captured.data.split(b"\r\n", 1)[0].decode("latin-1")
        _, status_text, reason = [*status_line.split(" ", 2), "", ""][:3]
        status = int(status_text) if status_text.isdigit() else 500
        reason = reason or "Error"
        if status in DETAILS:
            detail = DETAILS[status].format(line=self.max_line - 2)
        else:
            detail = f"The request is not valid HTTP: {exc}"
        try:
            util.write_nonblock(client, problem_bytes(status, reason, detail))
        except Exception:  # as gunicorn: the client may be gone
            self.log.debug("Failed to send error message.")


def _unread_beyond_drain(body: Any) -> bool:
    """Whether more of the request body is unread than gunicorn would drain."""
    reader = getattr(body, "reader", None)
    if isinstance(reader, gunicorn_body.LengthReader):
        return bool(reader.length > DRAIN_MAX_BYTES)
    if isinstance(reader, gunicorn_body.ChunkedReader):
        return reader.parser is not None  # not read to its end: size unknown
    return False


def _close_if_body_unread(
    app: Callable[..., Iterable[bytes]], environ: dict[str, Any], start_response: Any
) -> Iterable[bytes]:
    body = environ.get("wsgi.input")
    response = getattr(start_response, "__self__", None)
    if body is None or not isinstance(response, gunicorn_wsgi.Response):
        return app(environ, start_response)

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if _unread_beyond_drain(body):
            response.force_close()
        return start_response(status, headers, exc_info)

    return app(environ, start)


class JobgateLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's error log through Jobgate's handler, in JOBGATE_LOG_FORMAT.

    gunicorn's access log stays off: the app writes its own access line
    (app/requestlog.py), with the route and the request id.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for old in list(self.error_log.handlers):
            self.error_log.removeHandler(old)
        handler = logs.make_handler(Settings.from_env().log_format)
        handler._gunicorn = True  # type: ignore[attr-defined] # gunicorn drops it on reload
        self.error_log.addHandler(handler)
