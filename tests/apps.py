"""Waiting for the real app to load, in tests that start one."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from fastapi import FastAPI
from fastapi.testclient import TestClient

StartApp = Callable[..., AbstractContextManager[TestClient]]
"""The ``start_app`` fixture's type (see ``conftest.py``)."""


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
