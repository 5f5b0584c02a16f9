"""The panel's static files (its stylesheet and htmx, with htmx's licence), served from the
package: no build step at install, no network at run time."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from billfold.web.rendering import STATIC_PATH

STATIC_DIR = Path(__file__).parent / "static"


def mount_panel_static(app: FastAPI) -> None:
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="panel-static")
