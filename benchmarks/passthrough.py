"""Sections 1-3: what the middleware costs on the requests it does not own.

1. In-process: the trivial app called directly, behind a fully configured
   ``CheckoutMiddleware``, and behind werkzeug's ``DispatcherMiddleware`` mounting three
   stand-ins on the same three paths (the stock way to route a few paths away from an
   app). Each call gets a fresh copy of the environ, as a server would give it.
2. Under waitress: two servers (bare and wrapped) run side by side in their own
   processes; ``wrk`` (or a Python keep-alive client when ``wrk`` is absent) loads one,
   then the other, round after round, over loopback.
3. Streaming: a 100 MB upload and a 100 MB download through the wrapped app, in-process
   under ``tracemalloc`` and through waitress with the server's peak RSS read from
   ``/proc``. Growth must stay far below the size moved, proving nothing is buffered.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

from werkzeug.middleware.dispatcher import DispatcherMiddleware

from .common import (
    APP_PATH,
    Row,
    Sizes,
    base_environ,
    fmt_mb,
    fmt_ns,
    fmt_rate,
    fmt_ratio,
    fully_configured,
    judge,
    median,
    rotations,
    spread,
    trivial_app,
)
from .serve import stream_app

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MB = 1024 * 1024


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    return None


def _time_calls(app: Any, template: dict[str, Any], n: int) -> int:
    """Nanoseconds for ``n`` calls of ``app`` with a fresh environ copy each."""
    copy = template.copy
    sr = _start_response
    t0 = time.perf_counter_ns()
    for _ in range(n):
        app(copy(), sr)
    return time.perf_counter_ns() - t0


def in_process(sizes: Sizes, tmpdir: str) -> list[Row]:
    """Section 1: ns per call of the bare app, the middleware and the dispatcher."""
    middleware = fully_configured(trivial_app, tmpdir)
    owned = middleware.settings
    dispatcher = DispatcherMiddleware(
        trivial_app,
        {owned.path: trivial_app, owned.webhook_path: trivial_app,
         owned.status_path: trivial_app},
    )
    apps = {"bare": trivial_app, "middleware": middleware, "dispatcher": dispatcher}
    template = base_environ(APP_PATH)
    n = sizes.passthrough_calls
    for app in apps.values():  # warm-up: first calls, attribute caches, specialisation
        _time_calls(app, template, min(n, 5000))
    per_call: dict[str, list[float]] = {name: [] for name in apps}
    gc_was_enabled = gc.isenabled()
    try:
        for _, order in rotations(list(apps), sizes.passthrough_rounds):
            gc.collect()
            gc.disable()
            for name in order:
                per_call[name].append(_time_calls(apps[name], template, n) / n)
            if gc_was_enabled:
                gc.enable()
    finally:
        if gc_was_enabled:
            gc.enable()
    bare = per_call["bare"]
    rows = []
    calls = f"{sizes.passthrough_rounds} rounds x {n:,} calls per side"
    for name, label in (("bare", "bare app"),
                        ("middleware", "CheckoutMiddleware (fully configured)"),
                        ("dispatcher", "werkzeug DispatcherMiddleware (3 mounts)")):
        values = per_call[name]
        rows.append(Row("1", f"in-process: {label}, per call", fmt_ns(median(values)),
                        spread(values, fmt_ns), note=calls if name == "bare" else ""))
    added = {name: [v - b for v, b in zip(per_call[name], bare)]
             for name in ("middleware", "dispatcher")}
    ratio = {name: [v / b for v, b in zip(per_call[name], bare)]
             for name in ("middleware", "dispatcher")}
    mw_added, disp_added = median(added["middleware"]), median(added["dispatcher"])
    rows += [
        Row("1", "in-process: middleware added per request", fmt_ns(mw_added),
            spread(added["middleware"], fmt_ns), "<= 300 ns", judge(mw_added <= 300),
            data={"added_ns": mw_added}),
        Row("1", "in-process: middleware / bare time", fmt_ratio(median(ratio["middleware"])),
            spread(ratio["middleware"], fmt_ratio)),
        Row("1", "in-process: dispatcher added per request", fmt_ns(disp_added),
            spread(added["dispatcher"], fmt_ns)),
        Row("1", "in-process: dispatcher / bare time", fmt_ratio(median(ratio["dispatcher"])),
            spread(ratio["dispatcher"], fmt_ratio)),
        Row("1", "in-process: middleware added / dispatcher added",
            fmt_ratio(mw_added / disp_added) if disp_added > 0 else "n/a",
            "", "< 1 (cheaper)", judge(mw_added < disp_added)),
    ]
    return rows


# -- section 2: under a real server ----------------------------------------------------------


@contextlib.contextmanager
def waitress_server(
    app: str, tmpdir: str, threads: int = 4, *extra: str
) -> Iterator[tuple[int, int]]:
    """Run ``benchmarks.serve APP`` in a subprocess; yields ``(port, pid)``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.serve", app, "--tmpdir", tmpdir,
         "--threads", str(threads), *extra],
        cwd=_REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.match(r"PORT (\d+)", line)
        if match is None:
            raise RuntimeError(f"benchmarks.serve {app} did not start: {line!r}")
        yield int(match.group(1)), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def _wrk(port: int, seconds: float, connections: int) -> tuple[float, int]:
    """``wrk`` against the app path: ``(requests/s, requests)``."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(round(seconds), 1)}s",
         f"http://127.0.0.1:{port}{APP_PATH}"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if rate is None or count is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return float(rate.group(1)), int(count.group(1))


def _python_load(port: int, seconds: float, connections: int) -> tuple[float, int]:
    """The fallback load generator: keep-alive ``http.client`` connections on threads,
    each sending GETs back to back until the time is up: ``(requests/s, requests)``."""
    deadline = time.perf_counter() + seconds
    counts = [0] * connections
    errors: list[str] = []

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            while time.perf_counter() < deadline:
                conn.request("GET", APP_PATH)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors.append(str(response.status))
                    return
                counts[i] += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"load generator got status {errors[0]}")
    return sum(counts) / (time.perf_counter() - t0), sum(counts)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def under_server(sizes: Sizes, tmpdir: str) -> list[Row]:
    """Section 2: requests/s of the bare and the wrapped app under waitress, alternating.

    Besides requests/s (wall clock: what the issue asks, and what other tenants of a
    shared machine disturb most) it reports the server's CPU time per request from
    ``/proc``, which the neighbours disturb less, and the ratio section 1 predicts.
    """
    have_wrk = shutil.which("wrk") is not None
    load = _wrk if have_wrk else _python_load
    tool = "wrk -t1 -c8" if have_wrk else "Python keep-alive client, 8 connections"
    seconds = sizes.server_seconds if not have_wrk else max(round(sizes.server_seconds), 1)
    rates: dict[str, list[float]] = {"bare": [], "wrapped": []}
    cpu_per_request: dict[str, list[float]] = {"bare": [], "wrapped": []}
    with waitress_server("bare", tmpdir) as (bare_port, bare_pid), \
            waitress_server("wrapped", tmpdir) as (wrapped_port, wrapped_pid):
        servers = {"bare": (bare_port, bare_pid), "wrapped": (wrapped_port, wrapped_pid)}
        if not sizes.smoke:
            for port, _ in servers.values():  # warm-up: connections, first-request paths
                load(port, 1.0, 8)
        for _, order in rotations(list(servers), sizes.server_rounds):
            for name in order:
                port, pid = servers[name]
                cpu0 = _cpu_seconds(pid)
                rate, count = load(port, seconds, 8)
                rates[name].append(rate)
                cpu_per_request[name].append((_cpu_seconds(pid) - cpu0) / max(count, 1) * 1e9)
    ratios = [w / b for w, b in zip(rates["wrapped"], rates["bare"])]
    ratio = median(ratios)
    added = _added_ns(tmpdir, sizes)
    cpu_ratios = [b / w for w, b in zip(cpu_per_request["wrapped"], cpu_per_request["bare"])]
    note = (f"waitress 4 threads; {tool}; {sizes.server_rounds} rounds x "
            f"{seconds:g} s per side, alternating")
    bare_cpu = median(cpu_per_request["bare"])
    return [
        Row("2", "waitress: bare app", fmt_rate(median(rates["bare"])),
            spread(rates["bare"], fmt_rate), note=note),
        Row("2", "waitress: wrapped app", fmt_rate(median(rates["wrapped"])),
            spread(rates["wrapped"], fmt_rate)),
        Row("2", "waitress: wrapped / bare requests/s", fmt_ratio(ratio),
            spread(ratios, fmt_ratio), ">= 0.98", judge(ratio >= 0.98),
            note="wall clock; the machine's other load moves single rounds by 10-30%"),
        Row("2", "waitress: server CPU per request, bare", f"{bare_cpu / 1000:.0f} us",
            spread(cpu_per_request["bare"], lambda v: f"{v / 1000:.0f} us"),
            data={"bare_cpu_ns": bare_cpu}),
        Row("2", "waitress: bare / wrapped CPU per request (as requests/s)",
            fmt_ratio(median(cpu_ratios)), spread(cpu_ratios, fmt_ratio), ">= 0.98",
            judge(median(cpu_ratios) >= 0.98), note="server process utime+stime from /proc"),
        Row("2", "waitress: ratio predicted from section 1",
            fmt_ratio(bare_cpu / (bare_cpu + added)), "",
            note=f"bare CPU per request / (that + {added:.0f} ns added in-process)"),
    ]


def _added_ns(tmpdir: str, sizes: Sizes) -> float:
    """The middleware's in-process added ns per call, measured again (as in section 1)."""
    middleware = fully_configured(trivial_app, tmpdir)
    template = base_environ(APP_PATH)
    n = sizes.passthrough_calls
    added = []
    for _, order in rotations(["bare", "middleware"], sizes.passthrough_rounds):
        times = {}
        for name in order:
            times[name] = _time_calls(
                trivial_app if name == "bare" else middleware, template, n) / n
        added.append(times["middleware"] - times["bare"])
    return max(median(added), 0.0)


# -- section 3: streaming --------------------------------------------------------------------


class _Source:
    """A request body of ``size`` bytes made up on demand, never held whole."""

    def __init__(self, size: int) -> None:
        self.remaining = size

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.remaining
        n = min(n, self.remaining)
        self.remaining -= n
        return bytes(n)


def _traced_growth(work: Any) -> tuple[float, float]:
    """Peak traced allocation growth (bytes) while ``work()`` runs, and its seconds."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        t0 = time.perf_counter()
        work()
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before, elapsed


def _proc_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _rss_growth(pid: int, work: Any) -> float | None:
    """Peak RSS growth (bytes) of process ``pid`` while ``work()`` runs, or None where
    the kernel cannot reset the peak (no ``/proc/PID/clear_refs``)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current RSS
    except OSError:
        return None
    before = _proc_kb(pid, "VmRSS")
    work()
    return (_proc_kb(pid, "VmHWM") - before) * 1024.0


def streaming(sizes: Sizes, tmpdir: str) -> list[Row]:
    """Section 3: memory growth moving ``stream_bytes`` each way through the wrapped app."""
    size = sizes.stream_bytes
    app = fully_configured(stream_app, tmpdir)
    results: dict[str, str] = {}

    def upload_in_process() -> None:
        env = base_environ("/upload", "POST")
        env["wsgi.input"] = _Source(size)
        env["CONTENT_LENGTH"] = str(size)
        answer = b"".join(app(env, _start_response))
        results["upload"] = answer.decode()

    def download_in_process() -> None:
        env = base_environ("/download")
        env["QUERY_STRING"] = str(size)
        total = 0
        for chunk in app(env, _start_response):
            total += len(chunk)
        results["download"] = str(total)

    label = f"{size / _MB:g} MB"
    rows = []
    for name, work in (("upload", upload_in_process), ("download", download_in_process)):
        growth, elapsed = _traced_growth(work)
        if results[name] != str(size):
            raise RuntimeError(f"in-process {name} moved {results[name]} bytes, not {size}")
        rows.append(Row("3", f"{label} {name}, in-process: traced peak growth",
                        fmt_mb(growth / _MB), "", "< 5 MB",
                        judge(growth < 5 * _MB),
                        note=f"{size / _MB / elapsed:,.0f} MB/s through the middleware"))

    # waitress holds up to outbuf_high_watermark (16 MiB by default) of a response before
    # it blocks the app: the bare app under the same server shows that share, and a
    # wrapped server with a 1 MiB cap shows the process staying small when it is bounded.
    configs = {
        "bare": ("stream-bare", ()),
        "wrapped": ("stream", ()),
        "wrapped-1m": ("stream", ("--outbuf-high-watermark", str(_MB))),
    }
    growths: dict[tuple[str, str], list[float]] = {
        (config, name): [] for config in configs for name in ("upload", "download")}
    rates: dict[tuple[str, str], float] = {}
    for config, (server, extra) in configs.items():
        with waitress_server(server, tmpdir, 4, *extra) as (port, pid):
            for name, work in (("upload", _upload_http(port, size, results)),
                               ("download", _download_http(port, size, results))):
                for _ in range(sizes.stream_repeats):
                    t0 = time.perf_counter()
                    grown = _rss_growth(pid, work)
                    elapsed = time.perf_counter() - t0
                    if grown is None:  # the work did not run: nothing to check
                        break
                    if results[name] != str(size):
                        raise RuntimeError(f"waitress {name} moved {results[name]} bytes")
                    growths[config, name].append(grown / _MB)
                    rates[config, name] = size / _MB / elapsed

    def row(config: str, name: str, title: str, goal: str = "", ok: bool | None = None,
            note: str = "") -> Row:
        values = growths[config, name]
        if not values:
            return Row("3", f"{label} {name}, waitress, {title}: server peak RSS growth", "n/a",
                       verdict="skipped", note="cannot reset the peak: no /proc/PID/clear_refs")
        return Row("3", f"{label} {name}, waitress, {title}: server peak RSS growth",
                   fmt_mb(median(values)), spread(values, fmt_mb), goal,
                   "info" if ok is None else judge(ok), note)

    def med(config: str, name: str) -> float:
        return median(growths[config, name] or [0.0])

    repeats = f"median of {sizes.stream_repeats} transfers per row"
    rows += [
        row("bare", "upload", "bare app", note=repeats),
        row("wrapped", "upload", "wrapped", "< 5 MB", med("wrapped", "upload") < 5,
            note=f"{rates.get(('wrapped', 'upload'), 0):,.0f} MB/s over loopback"),
        row("bare", "download", "bare app",
            note="waitress's own buffer: outbuf_high_watermark, 16 MiB by default"),
        row("wrapped", "download", "wrapped", "< 5 MB above bare",
            med("wrapped", "download") - med("bare", "download") < 5,
            note=f"{med('wrapped', 'download') - med('bare', 'download'):+.2f} MB vs bare; "
                 f"{rates.get(('wrapped', 'download'), 0):,.0f} MB/s over loopback"),
        row("wrapped-1m", "download", "wrapped, outbuf_high_watermark 1 MiB", "< 5 MB",
            med("wrapped-1m", "download") < 5),
    ]
    return rows


def _upload_http(port: int, size: int, results: dict[str, str]) -> Any:
    def work() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            def body() -> Iterator[bytes]:
                remaining = size
                while remaining:
                    n = min(256 * 1024, remaining)
                    remaining -= n
                    yield bytes(n)

            conn.request("POST", "/upload", body=body(), headers={"Content-Length": str(size)})
            results["upload"] = conn.getresponse().read().decode()
        finally:
            conn.close()

    return work


def _download_http(port: int, size: int, results: dict[str, str]) -> Any:
    def work() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("GET", f"/download?{size}")
            response = conn.getresponse()
            total = 0
            while chunk := response.read(256 * 1024):
                total += len(chunk)
            results["download"] = str(total)
        finally:
            conn.close()

    return work
