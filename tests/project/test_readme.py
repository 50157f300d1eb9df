"""The README's recipes run as written: each code block below is taken from README.md.

A block is found by a line it contains (exactly one block may match), then executed:
test recipes are called with the real ``stripe_emulator`` fixture, the ``.ini`` is loaded
by PasteDeploy, the server settings are given to a real waitress and a real gunicorn.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import code_block

from stripe_checkout_mw.testing import StripeEmulator


def python_block(starting_with: str) -> str:
    return code_block(starting_with, "python")


def my_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"shop"]


TEST_RECIPES = ("def test_checkout(stripe_emulator)",
                "def test_a_paid_order_is_fulfilled_once(stripe_emulator, tmp_path)")


def test_offline_testing_example(stripe_emulator: StripeEmulator) -> None:
    namespace: dict[str, Any] = {"my_app": my_app}
    exec(python_block(TEST_RECIPES[0]), namespace)
    namespace["test_checkout"](stripe_emulator)
    assert len(stripe_emulator.sessions) == 1
    assert stripe_emulator.sessions[0]["status"] == "complete"


def test_webhook_testing_example(stripe_emulator: StripeEmulator, tmp_path: Path) -> None:
    namespace: dict[str, Any] = {"my_app": my_app}
    exec(python_block(TEST_RECIPES[1]), namespace)
    namespace["test_a_paid_order_is_fulfilled_once"](stripe_emulator, tmp_path)
    assert (tmp_path / "orders.db").is_file()
    assert [d.event_type for d in stripe_emulator.deliveries] == [
        "checkout.session.completed"] * 2


def test_the_test_recipes_ignore_exported_stripe_variables_and_write_only_to_tmp_path(
    tmp_path: Path,
) -> None:
    """The recipes as a user's test file, run by pytest with the shell's STRIPE_* exported."""
    project = tmp_path / "project"
    home = tmp_path / "home"
    basetemp = tmp_path / "basetemp"
    project.mkdir()
    home.mkdir()
    header = ("from typing import Any\n\n"
              "def my_app(environ: Any, start_response: Any) -> list[bytes]:\n"
              "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
              "    return [b'shop']\n\n")
    test_file = project / "test_shop.py"
    test_file.write_text(header + "\n\n".join(python_block(r) for r in TEST_RECIPES),
                         encoding="utf-8")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("STRIPE_") and key not in ("WEB_APP_URL", "HOME")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        STRIPE_SECRET_KEY="sk_test_exported_in_the_shell",
        STRIPE_WEBHOOK_SECRET="whsec_exported_in_the_shell",
        STRIPE_CHECKOUT_STORE=f"sqlite:///{tmp_path}/no-such-dir/orders.db",
        STRIPE_API_BASE="http://127.0.0.1:9",
        WEB_APP_URL="http://exported.invalid",
        PYTHONDONTWRITEBYTECODE="1",  # the test file's own bytecode is not the recipe's doing
    )
    answer = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
         str(basetemp), str(test_file)],
        cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "2 passed" in answer.stdout
    assert sorted(p.name for p in project.iterdir()) == ["test_shop.py"]
    assert list(home.rglob("*")) == []
    assert not (tmp_path / "no-such-dir").exists()
    # What the webhook recipe wrote is in its own tmp_path, under --basetemp.
    assert len(list(basetemp.rglob("orders.db"))) == 1


# -- PasteDeploy -----------------------------------------------------------------------


def test_pastedeploy_recipe_loads_and_sells(
    stripe_emulator: StripeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paste.deploy import loadapp
    from paste.deploy.loadwsgi import SERVER, loadcontext
    from waitress.adjustments import Adjustments

    (tmp_path / "shop.ini").write_text(code_block("[filter:checkout]", "ini"), encoding="utf-8")
    (tmp_path / "myshop.py").write_text(
        python_block("def make_app(global_config, **settings)").replace(
            "return app ", "return __import__('test_readme').my_app "),
        encoding="utf-8")
    (tmp_path / "catalog.json").write_text(json.dumps(
        {"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}}), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("STRIPE_SECRET_KEY", stripe_emulator.secret_key)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_emulator.api_base)
    monkeypatch.setenv("WEB_APP_URL", "https://shop.test")

    import webtest

    app = loadapp(f"config:{tmp_path / 'shop.ini'}")
    try:
        client = webtest.TestApp(app)
        assert client.get("/").text == "shop"
        answer = client.post("/create-checkout-session", {"price": "tee"}, status=303)
        assert answer.headers["Location"].startswith(stripe_emulator.api_base)
        assert stripe_emulator.sessions[0]["amount_total"] == 2000
        # The store named in the .ini, beside it.
        assert (tmp_path / "orders.db").is_file()
    finally:
        app.close()

    # The [server:main] settings are waitress settings it accepts, as written.
    server = loadcontext(SERVER, f"config:{tmp_path / 'shop.ini'}")
    settings = {k: v for k, v in server.local_conf.items() if k != "use"}
    adjustments = Adjustments(**settings)
    assert adjustments.max_request_body_size == 1_048_576
    assert adjustments.channel_timeout == 30 and adjustments.connection_limit == 100


# -- production servers ------------------------------------------------------------------


class _CountingApp:
    """The app behind the middleware; counts the requests that reach it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls += 1
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code)


@pytest.fixture
def waitress_from_the_readme() -> Iterator[tuple[str, _CountingApp, dict[str, Any]]]:
    """The README's waitress block run as written, its serve() on a free 127.0.0.1 port."""
    from waitress.server import create_server

    app = _CountingApp()
    servers: list[Any] = []

    def serve(application: Any, host: str, port: int, **settings: Any) -> None:
        servers.append(create_server(application, host="127.0.0.1", port=0, **settings))

    namespace: dict[str, Any] = {"app": app}
    code = python_block("import waitress\n").replace("import waitress\n", "")
    exec(code, {**namespace, "waitress": types.SimpleNamespace(serve=serve)}, namespace)
    [server] = servers
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}", app, namespace["WAITRESS_SETTINGS"]
    finally:
        deadline = time.monotonic() + 10
        while server.active_channels and time.monotonic() < deadline:
            time.sleep(0.01)
        server.close()
        thread.join(timeout=10)
        server.task_dispatcher.shutdown()


def test_waitress_settings_refuse_a_large_body_before_the_app_sees_it(
    waitress_from_the_readme: tuple[str, _CountingApp, dict[str, Any]],
) -> None:
    url, app, settings = waitress_from_the_readme
    assert post(url + "/upload", b"x" * 1000) == 200
    assert app.calls == 1
    # A client announcing one byte too many gets waitress's 413 before it sends the body.
    host, port = url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as client:
        client.sendall(b"POST /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: "
                       + str(settings["max_request_body_size"] + 1).encode() + b"\r\n\r\nxx")
        assert client.recv(100).startswith(b"HTTP/1.1 413 ")
    assert app.calls == 1
    assert {"channel_timeout", "connection_limit"} <= set(settings)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_gunicorn_settings_are_valid_and_serve(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    from gunicorn.config import Config

    conf = python_block("# gunicorn -c gunicorn.conf.py myshop:app")
    namespace: dict[str, Any] = {}
    exec(conf, namespace)
    config = Config()
    settings = {k: v for k, v in namespace.items() if not k.startswith("__")}
    for name, value in settings.items():
        assert name in config.settings, f"{name} is not a gunicorn setting"
        config.set(name, value)  # gunicorn's own validation
    assert config.worker_class_str == "gthread"

    # Served as written, but on 127.0.0.1 with one worker, to keep the test small.
    port = _free_port()
    conf_file = tmp_path / "gunicorn.conf.py"
    conf_file.write_text(conf + f'\nbind = "127.0.0.1:{port}"\nworkers = 1\n', encoding="utf-8")
    (tmp_path / "myshop.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'shop']\n", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(conf_file), "myshop:app"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                    assert answer.read() == b"shop"
                    break
            except OSError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
                time.sleep(0.2)
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_no_install_hint_names_the_package_on_the_index_where_it_is_not() -> None:
    """``pip install stripe-checkout-mw`` (with or without an extra) finds nothing on the
    package index yet, so neither the README nor a message the package prints says it: they
    name the extra's packages, or the extra in a clone."""
    root = Path(__file__).resolve().parents[2]
    wrong = re.compile(r"pip install (-q )?['\"]?stripe-checkout-mw\b")
    texts = {path: path.read_text(encoding="utf-8")
             for path in [root / "README.md", *sorted((root / "stripe_checkout_mw").rglob("*.py"))]}
    said = [f"{path.relative_to(root)}:{number}" for path, text in texts.items()
            for number, line in enumerate(text.splitlines(), 1)
            if wrong.search(line) and not ("not on the package index" in line
                                           or "finds nothing" in line)]  # saying why
    assert said == []
