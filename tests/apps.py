"""Waiting for the real app to load, in tests that start one (in process or as a server);
and an app whose index never loads, for its guards."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from index.settings import Settings

StartApp = Callable[..., AbstractContextManager[TestClient]]
"""The ``start_app`` fixture's type (see ``conftest.py``)."""


def guards_only(settings: Settings, **update: Any) -> TestClient:
    """An app whose index never loads (no lifespan): its guards and middleware still run."""
    from service.app import create_app

    return TestClient(create_app(settings.model_copy(update=update)))


def settle(app: FastAPI, timeout_s: float = 180.0) -> None:
    """Wait until the app's background load has finished, well or badly."""
    service = app.state.service
    deadline = time.monotonic() + timeout_s
    while (
        not service.ready
        and service.load_error is None
        and service.unavailable is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)


def wait_ready(service: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Wait until the server at ``service`` answers /readyz with 200 (or fails, with its log)."""
    deadline = time.monotonic() + 180  # first use may build the index (~30 s)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited:\n{log_path.read_text()[-3000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{service}/readyz", timeout=2) as response,  # noqa: S310
        ):
            if response.status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"service not ready in time:\n{log_path.read_text()[-3000:]}")
