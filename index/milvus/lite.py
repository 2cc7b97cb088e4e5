"""A Milvus Lite server on this machine, for ``make serve STORE=milvus``, tests and benchmarks.

    python -m index.milvus.lite DATA_DIR [--port N] -- COMMAND [ARG ...]

starts the server on loopback (a free port unless ``--port``), waits until it answers,
runs COMMAND with ``POLICY_QA_STORE=milvus`` and ``POLICY_QA_MILVUS_URI`` naming it, and
stops the server when COMMAND ends. Milvus Lite is Milvus's API in one Python process, for
development; production runs Milvus Standalone or Distributed (docs/deployment.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiteServer:
    """One Milvus Lite server process over a data folder (it survives restarts)."""

    def __init__(self, data_dir: Path, *, port: int = 0) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start the server and wait until it answers; returns its URI.

        Raises:
            RuntimeError: it exited or did not answer in time.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.data_dir)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Milvus Lite exited with status {self.process.returncode}")
            if self.answers():
                return self.uri
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Milvus Lite did not answer on {self.uri} in {timeout_s:.0f} s")

    def answers(self) -> bool:
        from index.milvus.store import client

        try:
            probe = client(self.uri, timeout=2)
        except Exception:  # not up yet, whatever the reason
            return False
        with contextlib.suppress(Exception):
            probe.close()
        return True

    def stop(self) -> None:
        """Stop it gracefully (SIGINT, so it closes its data folder), or kill it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(2)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Stop it at once, as a crash or a lost machine would."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running(data_dir: Path, *, port: int = 0) -> Iterator[LiteServer]:
    server = LiteServer(data_dir, port=port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        usage="python -m index.milvus.lite DATA_DIR [--port N] -- COMMAND [ARG ...]",
    )
    parser.add_argument("data_dir", type=Path, help="Milvus Lite's data folder")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    words = list(sys.argv[1:] if argv is None else argv)
    if "--" not in words or words.index("--") == len(words) - 1:
        parser.error("give the command to run: -- COMMAND [ARG ...]")
    split = words.index("--")
    args, command = parser.parse_args(words[:split]), words[split + 1 :]
    with running(args.data_dir, port=args.port) as server:
        print(f"Milvus Lite serving {args.data_dir} on {server.uri}", flush=True)
        env = {**os.environ, "POLICY_QA_STORE": "milvus", "POLICY_QA_MILVUS_URI": server.uri}
        try:
            return subprocess.run(command, env=env, check=False).returncode  # noqa: S603
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    raise SystemExit(main())
