"""The sdist and the wheel as a newcomer gets them, outside the source tree.

The source is copied to a temporary folder; its sdist is built there (setuptools' PEP 517
hook, as ``python -m build`` would) and the wheel is built *from the sdist* with
``pip wheel``, so a file the sdist forgets breaks the wheel too. Then:

- the wheel goes into a fresh virtualenv (its dependencies, werkzeug and stripe, come
  from the package index pip is configured with), and ``python -m stripe_checkout_mw
  demo`` is run from an empty folder and bought through over HTTP: create a session,
  pay on the emulator, see the order fulfilled;
- the sdist is unpacked and a representative part of its own test suite runs from there
  (the package, conftest and examples all imported from the unpacked folder).

Slow (a minute or two): it builds, creates a virtualenv and installs. CI runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

#: One worker builds the sdist and the wheel once for the whole module (-n auto --dist
#: loadgroup); spread over workers, each would build them again.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("distributions")]

ROOT = Path(__file__).resolve().parents[2]
CARD = "4242 4242 4242 4242"
#: What never belongs in a copy of the source: environments, caches, build output.
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info",
                                     "__pycache__", ".*_cache", ".hypothesis", "*.db*")
#: The part of the suite run from the unpacked sdist: the middleware, the store, the
#: demo with its examples, the README's recipes, and ruff and mypy on the sdist's tree.
#: A part of the suite that needs every kind of file the sdist must carry (the package, the
#: tests' conftest, the examples, the README); the static checks run from the source tree.
SDIST_TESTS = ("tests/checkout/test_checkout.py", "tests/ledger/test_store.py",
               "tests/cli/test_demo.py", "tests/project/test_readme.py")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the shop's configuration or this venv's Python settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRIPE_", "PYTHON", "VIRTUAL_ENV")) and k != "WEB_APP_URL"}
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, timeout: float = 300, **extra_env: str) -> str:
    answer = subprocess.run(args, cwd=cwd, env=clean_env(**extra_env), capture_output=True,
                            text=True, timeout=timeout)
    assert answer.returncode == 0, f"{args}: {answer.stdout}\n{answer.stderr}"
    return answer.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"sdist": ..., "wheel": ...}``, built outside the source tree; times are printed."""
    base = tmp_path_factory.mktemp("dists")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    out = base / "dist"
    out.mkdir()
    started = time.monotonic()
    name = run([sys.executable, "-c",
                "import sys; from setuptools import build_meta; "
                "print(build_meta.build_sdist(sys.argv[1]))", str(out)], source).split()[-1]
    sdist = out / name
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(sdist)],
        base)
    [wheel] = out.glob("*.whl")
    print(f"built sdist and wheel in {time.monotonic() - started:.1f} s")
    return {"sdist": sdist, "wheel": wheel}


# -- the wheel -----------------------------------------------------------------------------


def test_the_wheel_carries_the_demo_shop_the_license_and_the_project_urls(
    dists: dict[str, Path],
) -> None:
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = wheel.read(metadata).decode()
    for asset in ("shop.html", "success.html", "cancel.html", "catalog.json", "__init__.py"):
        assert f"stripe_checkout_mw/demo_shop/{asset}" in names
    assert "stripe_checkout_mw/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE")
               for n in names)
    assert not any(n.startswith(("tests/", "examples/", "benchmarks/")) for n in names)
    home = "https://github.com/stripe-checkout-mw/stripe-checkout-mw"
    assert f"Project-URL: Source, {home}" in meta
    assert "License: MIT" in meta or "License-Expression: MIT" in meta
    # The README is the index page: its links to the repository's files are absolute.
    assert "](BENCHMARKS.md)" not in meta and "](SECURITY.md)" not in meta
    assert f"]({home}/blob/main/SECURITY.md)" in meta


@pytest.fixture(scope="module")
def installed(dists: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv, outside the tree, with only the wheel and its dependencies."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    started = time.monotonic()
    run([sys.executable, "-m", "venv", str(venv)], venv.parent)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", str(dists["wheel"])], venv.parent,
        timeout=600)
    print(f"fresh venv and wheel install in {time.monotonic() - started:.1f} s")
    return python


def _lines(stream: IO[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _request(url: str, form: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    opener = urllib.request.build_opener(_NoRedirects)
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with opener.open(url, data=data, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


@contextlib.contextmanager
def _running_demo(argv: list[str], cwd: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``argv`` (a ``demo`` command) started in ``cwd``, with the banner it printed."""
    process = subprocess.Popen(argv, cwd=cwd, env=clean_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines = _lines(process.stdout)
    banner = ""
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C stops it" not in banner:
            try:
                banner += lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no banner from the demo within 60 s: {banner!r}")
        yield process, banner
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stdout.close()
        process.stderr.close()


@pytest.fixture
def demo(installed: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m stripe_checkout_mw demo --port 0`` from the fresh venv, in an empty folder."""
    with _running_demo([str(installed), "-m", "stripe_checkout_mw", "demo", "--port", "0"],
                       tmp_path) as running:
        yield running


def _buy_and_stop(process: subprocess.Popen[str], banner: str) -> None:
    """Buy two T-shirts through the demo of ``banner`` as a customer would, see the order
    fulfilled, then stop the demo with Ctrl-C."""
    assert "the built-in shop, on the OFFLINE Stripe emulator" in banner
    found = re.search(r"Open (http://127\.0\.0\.1:\d+/)", banner)
    assert found is not None, banner
    shop = found.group(1)

    status, _, page = _request(shop)
    assert status == 200 and b'id="buy-tee"' in page
    status, headers, body = _request(f"{shop}create-checkout-session",
                                     {"price": "tee", "quantity": "2", "customer_email": ""})
    assert status == 303, body
    pay_url = headers["Location"]
    session_id = pay_url.rsplit("/", 1)[1]
    status, headers, _ = _request(pay_url, {"email": "newcomer@example.com",
                                            "cardnumber": CARD, "action": "pay"})
    assert status == 303 and headers["Location"] == f"{shop}success?session_id={session_id}"
    status, _, page = _request(headers["Location"])
    assert status == 200 and b"Checking your order" in page
    deadline = time.monotonic() + 20
    while True:
        status, _, body = _request(f"{shop}checkout-session?session_id={session_id}")
        order = json.loads(body)
        if order.get("fulfilled") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200 and order["fulfilled"] is True and order["status"] == "paid"
    assert order["amount_total"] == 4000 and order["items"][0]["name"] == "T-shirt"

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    assert process.stderr is not None and "Traceback" not in process.stderr.read()


def test_the_demo_from_the_wheel_sells_with_no_stripe_account(
    demo: tuple[subprocess.Popen[str], str], tmp_path: Path,
) -> None:
    process, banner = demo
    _buy_and_stop(process, banner)
    assert list(tmp_path.iterdir()) == []  # the demo's store was a temporary folder


# -- the README's first commands, as written ---------------------------------------------------


def _readme_command(starts: str) -> str:
    """The README's one command line that starts with ``starts``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    [line] = [line for line in text.splitlines() if line.startswith(starts)]
    return line


def _run_as_written(line: str, cwd: Path) -> None:
    """Run the README's ``line``: all but its last command through the shell, as typed, then
    the last (the foreground demo) on a free port, and buy through it."""
    setup, _, last = line.rpartition(" && ")
    subprocess.run(["sh", "-c", setup], cwd=cwd, env=clean_env(), check=True, timeout=900,
                   capture_output=True)
    argv = shlex.split(last)
    with _running_demo([str(cwd / argv[0]), *argv[1:], "--port", "0"], cwd) as (process,
                                                                               banner):
        _buy_and_stop(process, banner)


def test_the_readme_starts_from_the_clone_not_the_package_index() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "not on the package index" in text
    lead = text[:text.index("## Quick start")]
    assert "git clone https://github.com/stripe-checkout-mw/stripe-checkout-mw" in lead
    # No shell command installs it by name from the index (prose may say that this fails).
    commands = [line for line in text.splitlines()
                if line.startswith(("pip ", "python3 -m venv", ".venv/bin/pip"))]
    assert commands and not [line for line in commands
                             if re.search(r"pip install (-q )?'?stripe-checkout-mw\b", line)]


def test_the_readmes_demo_command_works_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "stripe-checkout-mw"
    shutil.copytree(ROOT, clone, ignore=_NOT_SOURCE)
    _run_as_written(_readme_command("python3 -m venv .venv && .venv/bin/pip install -q -e "
                                    "'.[demo]'"), clone)


def test_the_readmes_demo_command_works_from_the_built_wheel(
    dists: dict[str, Path], tmp_path: Path,
) -> None:
    (tmp_path / "dist").mkdir()
    shutil.copy(dists["wheel"], tmp_path / "dist")
    _run_as_written(_readme_command("python3 -m venv demo-venv && "), tmp_path)


def test_a_framework_demo_without_the_examples_says_where_to_get_them(
    installed: Path, tmp_path: Path,
) -> None:
    answer = subprocess.run(
        [str(installed), "-m", "stripe_checkout_mw", "demo", "--framework", "flask", "--port",
         "0"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert answer.returncode == 1
    assert answer.stderr.startswith("demo: --framework flask runs an example shop from a "
                                    "source checkout")
    assert "https://github.com/stripe-checkout-mw/stripe-checkout-mw" in answer.stderr
    assert answer.stderr.count("\n") == 1 and answer.stdout == ""


# -- the sdist -----------------------------------------------------------------------------


def test_the_sdist_carries_its_tests_and_they_pass_from_the_unpacked_folder(
    dists: dict[str, Path], tmp_path: Path,
) -> None:
    with tarfile.open(dists["sdist"]) as archive:
        if hasattr(tarfile, "data_filter"):  # Python 3.12+, and backported to late 3.9-3.11
            archive.extractall(tmp_path, filter="data")
        else:
            archive.extractall(tmp_path)
    [unpacked] = tmp_path.iterdir()
    for needed in ("LICENSE", "README.md", "SECURITY.md", "BENCHMARKS.md", "MANIFEST.in",
                   "setup.cfg", "pyproject.toml", "ruff.toml", "tests/conftest.py",
                   "examples/catalog.json", "examples/pyramid_shop/development.ini",
                   "stripe_checkout_mw/demo_shop/shop.html", "benchmarks/__init__.py"):
        assert (unpacked / needed).is_file(), f"the sdist lacks {needed}"
    assert "MIT License" in (unpacked / "LICENSE").read_text(encoding="utf-8")

    started = time.monotonic()
    # This venv's Python runs them, but with the unpacked folder first on sys.path, so the
    # package, conftest and examples under test are the sdist's (checked first).
    where = run([sys.executable, "-c", "import stripe_checkout_mw; print(stripe_checkout_mw"
                 ".__file__)"], unpacked)
    assert Path(where.strip()).is_relative_to(unpacked)
    output = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                  "--basetemp", str(tmp_path / "basetemp"), *SDIST_TESTS], unpacked,
                 timeout=900)
    print(f"sdist tests in {time.monotonic() - started:.1f} s: {output.splitlines()[-1]}")
    summary = output.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed(, \d+ skipped)? in .*", summary), summary
