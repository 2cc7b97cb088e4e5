"""The real service (or any app factory) under uvicorn in a subprocess, on loopback.

Shared by the benchmarks and the browser tests: each needs a real server process, started
offline with its own settings and stopped even when the caller fails.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from index.settings import PROJECT_ROOT

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def rss_kb(pid: int) -> int | None:
    """Resident memory of ``pid`` in kB (None once it has gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def uvicorn_process(
    app: str,
    *,
    port: int,
    env: Mapping[str, str],
    log_path: Path,
    workers: int = 1,
    quiet: bool = False,
    cwd: Path = PROJECT_ROOT,
) -> Iterator[subprocess.Popen[bytes]]:
    """``app`` (an app factory, "module:function") on 127.0.0.1:``port``, imported from the
    checkout in ``cwd`` (the current directory comes first on ``python -m``'s path).

    Output goes to ``log_path``; the process is stopped on exit (SIGTERM, then SIGKILL).
    """
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        *(["--log-level", "warning"] if quiet else []),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **OFFLINE_ENV, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
