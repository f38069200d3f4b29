"""`atoll up` runs the router as a child process (its own interpreter, so routing never waits
on the API's or the worker's work for the GIL), and stops it when it stops."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from atoll.errors import Unavailable
from atoll.settings import Settings, child_environment


class RouterProcess:
    def __init__(self, settings: Settings, *, host: str, port: int) -> None:
        self.settings = settings
        self.url = f"http://{host}:{port}"
        self.command = [sys.executable, "-m", "atoll", "router", "--host", host, "--port", str(port)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> str:
        """Start it and wait for `/healthz`; the URL, or `Unavailable` saying why not."""
        self.process = subprocess.Popen(  # noqa: S603 -- our own interpreter and arguments
            self.command, env=child_environment(self.settings), stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Unavailable(
                    f"the router exited with code {self.process.returncode} (see its log above)"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise Unavailable(f"the router did not answer at {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
