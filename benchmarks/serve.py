"""A waitress server for the benchmarks, run as its own process on ``127.0.0.1``.

Why a subprocess: the load generator (``wrk`` or the Python fallback) and the server
must not share a GIL, and the streaming benchmark measures the server's own resident
memory from outside (``/proc/PID/status``), which needs a process of its own.

    python -m benchmarks.serve bare|wrapped|stream --tmpdir DIR

It binds a free port, prints ``PORT <n>`` on one line, and serves until killed or until its
standard input closes: the benchmark gives it a pipe, so a benchmark that dies (a CI timeout
kills it) cannot leave a server behind.

- ``bare``: the trivial app alone.
- ``wrapped``: the trivial app behind a fully configured ``CheckoutMiddleware``.
- ``stream``: :func:`stream_app` behind a fully configured ``CheckoutMiddleware``.
- ``stream-bare``: :func:`stream_app` alone (what waitress itself holds).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

CHUNK = 64 * 1024


def stream_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """``POST /upload`` reads the body in 64 KiB chunks and answers its size;
    ``GET /download?<n>`` streams ``n`` zero bytes in fresh 64 KiB chunks. Neither
    keeps more than one chunk, so any buffering seen is somebody else's."""
    path = environ.get("PATH_INFO", "")
    if path == "/upload":
        stream = environ["wsgi.input"]
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
        total = 0
        while remaining > 0:
            chunk = stream.read(min(CHUNK, remaining))
            if not chunk:
                break
            total += len(chunk)
            remaining -= len(chunk)
        body = str(total).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/download":
        size = int(environ.get("QUERY_STRING") or 0)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return _zeros(size)
    start_response("404 Not Found", [("Content-Length", "0")])
    return []


def _zeros(size: int) -> Iterator[bytes]:
    while size > 0:
        n = min(CHUNK, size)
        size -= n
        yield bytes(n)


def _exit_on_eof() -> None:
    for _ in sys.stdin:
        pass
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=["bare", "wrapped", "stream", "stream-bare"])
    parser.add_argument("--tmpdir", required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--outbuf-high-watermark", type=int, default=None,
                        help="waitress's cap on a response it holds (default 16 MiB)")
    args = parser.parse_args(argv)

    import waitress.server  # type: ignore[import-untyped]

    from .common import fully_configured, trivial_app

    if args.app == "bare":
        app = trivial_app
    elif args.app == "wrapped":
        app = fully_configured(trivial_app, args.tmpdir)
    elif args.app == "stream":
        app = fully_configured(stream_app, args.tmpdir)
    else:
        app = stream_app
    # waitress warns "Task queue depth is N" whenever all its threads are busy, which
    # under a load generator is the point; keep the table readable.
    logging.getLogger("waitress").setLevel(logging.ERROR)
    options = {}
    if args.outbuf_high_watermark is not None:
        options["outbuf_high_watermark"] = args.outbuf_high_watermark
    server = waitress.server.create_server(
        app, host="127.0.0.1", port=0, threads=args.threads, ident="benchmarks", **options
    )
    print(f"PORT {server.effective_port}", flush=True)
    threading.Thread(target=_exit_on_eof, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
