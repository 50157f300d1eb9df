"""Serve ``development.ini`` on werkzeug's development server: ``python serve.py``.

``pserve development.ini`` does the same with waitress; this script exists so that a
mistake in the ``.ini`` (an unknown key, a value that does not convert, a missing
catalog) is reported as one line instead of a traceback.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from paste.deploy import loadapp
from werkzeug.serving import run_simple

HERE = Path(__file__).resolve().parent


def load(ini: str | Path = HERE / "development.ini", **global_conf: str) -> Any:
    """The ``main`` pipeline of ``ini``, as ``pserve`` would build it."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # so that ``call:shop:main`` finds shop.py
    return loadapp(f"config:{Path(ini).resolve()}", global_conf=global_conf or None)


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    port = os.environ.get("PORT", "8000")
    if not port.isdigit():
        sys.exit(f"pyramid_shop: PORT={port!r} is not a port number")
    os.environ.setdefault("WEB_APP_URL", f"http://127.0.0.1:{port}")
    ini = sys.argv[1] if len(sys.argv) > 1 else HERE / "development.ini"
    try:
        app = load(ini)
    except (ValueError, TypeError, LookupError, OSError) as exc:
        sys.exit(f"pyramid_shop: {ini}: {exc}")
    try:  # run_simple would print two lines and exit; one line says it better
        socket.create_server(("127.0.0.1", int(port))).close()
    except OSError as exc:
        sys.exit(f"pyramid_shop: cannot listen on port {port} ({exc.strerror}); "
                 "set PORT to a free port")
    run_simple("127.0.0.1", int(port), app)


if __name__ == "__main__":
    main()
