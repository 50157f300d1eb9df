"""Serve ``development.ini`` on werkzeug's development server: ``python serve.py``.

``pserve development.ini`` does the same with waitress; this script exists so that a
mistake in the ``.ini`` (an unknown key, a value that does not convert, a missing
catalog) is reported as one line instead of a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from paste.deploy import loadapp

from stripe_checkout_mw.serving import serve_example

HERE = Path(__file__).resolve().parent


def load(ini: str | Path = HERE / "development.ini", **global_conf: str) -> Any:
    """The ``main`` pipeline of ``ini``, as ``pserve`` would build it."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # so that ``call:shop:main`` finds shop.py
    return loadapp(f"config:{Path(ini).resolve()}", global_conf=global_conf or None)


def main() -> None:
    ini = sys.argv[1] if len(sys.argv) > 1 else HERE / "development.ini"

    def load_ini() -> Any:
        try:
            return load(ini)
        except (ValueError, TypeError, LookupError, OSError) as exc:
            raise ValueError(f"{ini}: {exc}") from None

    serve_example("pyramid_shop", load_ini)


if __name__ == "__main__":
    main()
