"""The MLflow server that `atoll up` runs for itself: a managed subprocess.

A subprocess rather than mounting MLflow's app in-process: MLflow's server brings its own
web framework, workers and job runner, and a crash or slow start there must not take the
portal with it. It stores runs and the registry in SQLite and artifacts under the data
directory, listens on loopback only, and has its job runner and telemetry turned off.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from atoll.errors import Unavailable


class EmbeddedMlflow:
    def __init__(self, data_dir: Path, port: int, extra_env: dict[str, str] | None = None) -> None:
        self.root = (data_dir / "mlflow").resolve()
        self.port = port
        self.extra_env = extra_env or {}
        self.uri = f"http://127.0.0.1:{port}"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
        ]  # fmt: skip

    def start(self, timeout: float = 180.0) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            **self.extra_env,
        }
        log = (self.root / "server.log").open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
            self.command(),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends MLflow's workers too
            preexec_fn=_die_with_parent,  # one prctl call: nothing that could deadlock after fork
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise Unavailable(f"the embedded MLflow exited at start; see {self.root / 'server.log'}")
            try:
                if httpx.get(f"{self.uri}/health", timeout=1).status_code == 200:
                    return self.uri
            except httpx.HTTPError:
                time.sleep(0.25)
        self.stop()
        raise Unavailable(
            f"the embedded MLflow did not answer within {timeout:.0f} s; see {self.root / 'server.log'}"
        )

    def stop(self) -> None:
        """End MLflow and the server processes it started (its whole process group)."""
        if self._process is not None:
            for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self._process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self._process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._process = None


_PR_SET_PDEATHSIG = 1
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None)  # the process's own symbols, libc's prctl among them
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """Linux: MLflow gets SIGTERM if `atoll up` dies without cleaning up (e.g. SIGKILL)."""
    prctl = getattr(_LIBC, "prctl", None)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
