"""The local target's supervisor: runs one `atoll serve` process per desired local deployment.

It lives in the process that runs `atoll up` (one per data directory: a file lock keeps a
second one out) and ticks every 0.25 s:

- a desired deployment without a process gets one on a free loopback port; a new
  generation (a new revision) gets a new process, and the old one is stopped only once
  the new one is ready (one more, never one fewer, like the Kubernetes rollout);
- readiness is the model server's own `/v2/health/ready`; one that is not ready within
  the ready timeout is stopped and counted as a crash;
- a process that exits is restarted with exponential backoff (1, 2, 4 ... 30 s); after
  three crashes in a row, each within a minute of its start, the state says
  `CrashLoopBackOff` (it keeps retrying, as a kubelet does);
- a deployment no longer desired has its process stopped (SIGTERM: the server drains) and
  its directory removed.

Stopping the supervisor stops every model server it runs (`atoll up` stopping stops them).
A supervisor that dies without stopping (SIGKILL, a crash) leaves its servers running in
their own sessions; the next one re-adopts each whose recorded pid still runs
`atoll serve --deployment <name>` and answers ready for the same model and version on the
recorded port, and replaces any other.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

from atoll.deployer import local_server
from atoll.deployer.targets.localfiles import (
    HEARTBEAT_SECONDS,
    Layout,
    ServerState,
    is_model_server_of,
    pid_alive,
    read_json,
    tail,
    write_json,
)
from atoll.settings import Settings, child_environment

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
CRASH_WINDOW_SECONDS = 60.0  # a process that ran longer than this resets the crash count
CRASHLOOP_AFTER = 3
MAX_BACKOFF_SECONDS = 30.0
MAX_LOG_BYTES = 20 * 1024 * 1024
KILL_GRACE_SECONDS = 5.0
NEW_DIRECTORY_SECONDS = 10.0


class SupervisorRunning(Exception):
    """Another supervisor holds this data directory."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def probe_ready(port: int, timeout: float = 0.5) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def serves(port: int, model: str, version: int, timeout: float = 1.0) -> bool:
    """Whether the server on `port` serves exactly this model version (its OIP metadata says so)."""
    url = f"http://127.0.0.1:{port}/v2/models/{quote(model, safe='')}/versions/{version}"
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Running:
    """One model server process (a child, or adopted from a supervisor that died)."""

    pid: int
    port: int
    generation: int
    started_at: float
    drain_seconds: int = 10
    popen: subprocess.Popen[bytes] | None = None
    ready: bool = False
    stopping: bool = False
    kill_at: float | None = None
    log_file: IO[bytes] | None = field(default=None, repr=False)

    def exit_code(self) -> int | None:
        """None while running; the exit code (or -1 for an adopted process) once it has exited."""
        if self.popen is not None:
            return self.popen.poll()
        return None if pid_alive(self.pid) else -1

    def close(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


class LocalSupervisor:
    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str],
        ready_timeout: float = 120.0,
        python: str = sys.executable,
    ) -> None:
        self.layout = Layout(data_dir)
        self.env = env
        self.ready_timeout = ready_timeout
        self.python = python
        self._procs: dict[str, list[Running]] = {}
        self._crashes: dict[str, int] = {}
        self._next_start: dict[str, float] = {}
        self._states: dict[str, ServerState] = {}
        self._written: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_file: IO[str] | None = None
        self._last_beat = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalSupervisor:
        return cls(
            settings.data_dir,
            env=child_environment(settings),
            ready_timeout=float(settings.local_ready_timeout_seconds),
        )

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Take the data directory's lock, re-adopt surviving servers, tick in a thread."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        lock = (self.layout.root / "supervisor.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise SupervisorRunning(
                f"another Atoll supervises the local deployments under {self.layout.root}"
            ) from None
        self._lock_file = lock
        self._heartbeat(force=True)
        for name in self.layout.names():
            self._adopt(name)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="local-supervisor", daemon=True)
        self._thread.start()

    def stop(self, *, stop_servers: bool = True) -> None:
        """Stop ticking; with `stop_servers`, stop every model server (SIGTERM, then SIGKILL)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if stop_servers:
            running = [(name, p) for name, procs in self._procs.items() for p in procs]
            for _, process in running:
                self._terminate(process)
            deadline = time.time() + max((p.kill_at or 0) - time.time() for _, p in running) if running else 0
            while running and time.time() < deadline:
                running = [(n, p) for n, p in running if p.exit_code() is None]
                time.sleep(0.05)
            for _, process in running:
                self._kill(process)
            for name in list(self._procs):
                state = self._state(name)
                state.phase, state.reason, state.message = "stopped", "PlatformStopped", "Atoll stopped"
                state.event("Normal", "Stopped", "the platform stopped; the next start restarts it")
                for process in self._procs.pop(name):
                    process.close()
                if self.layout.desired(name).exists():
                    write_json(self.layout.state(name), state.as_json())
        else:
            for procs in self._procs.values():
                for process in procs:
                    process.close()
            self._procs.clear()
        self.layout.supervisor.unlink(missing_ok=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("local supervisor tick failed")
            self._stop.wait(TICK_SECONDS)

    def _heartbeat(self, *, force: bool = False) -> None:
        now = time.time()
        if force or now - self._last_beat >= HEARTBEAT_SECONDS:
            write_json(self.layout.supervisor, {"pid": os.getpid(), "heartbeat": now})
            self._last_beat = now

    def run_once(self) -> None:
        self._heartbeat()
        for name in sorted(set(self.layout.names()) | set(self._procs)):
            self._reconcile(name)

    # -- one deployment ---------------------------------------------------------------------

    def _state(self, name: str) -> ServerState:
        if name not in self._states:
            self._states[name] = self.layout.read_state(name) or ServerState()
        return self._states[name]

    def _save(self, name: str) -> None:
        data = self._state(name).as_json()
        if self._written.get(name) != data and self.layout.directory(name).is_dir():
            write_json(self.layout.state(name), data)
            self._written[name] = data

    def _reconcile(self, name: str) -> None:
        desired = read_json(self.layout.desired(name))
        procs = self._procs.setdefault(name, [])
        if desired is None:
            self._retire(name, procs)
            return
        generation = int(desired["generation"])
        try:
            spec = local_server.parse(desired["object"])
        except (KeyError, ValueError) as exc:
            state = self._state(name)
            state.phase, state.reason, state.message = "failed", "InvalidSpec", str(exc)[:500]
            self._save(name)
            return
        state = self._state(name)
        self._reap(name, procs, generation, state)
        current = next((p for p in procs if p.generation == generation and not p.stopping), None)
        now = time.time()
        if current is None:
            if now >= self._next_start.get(name, 0.0):
                self._launch(name, spec, generation, state)
        elif not current.ready:
            if probe_ready(current.port):
                current.ready = True
                state.phase, state.reason, state.message = "ready", None, None
                state.ready_at = now
                took = now - current.started_at
                state.event("Normal", "Ready", f"ready on 127.0.0.1:{current.port} after {took:.1f} s")
            elif now - current.started_at > self.ready_timeout:
                why = f"not ready within {self.ready_timeout:.0f} s: stopped"
                state.event("Warning", "ReadinessTimeout", why)
                self._terminate(current)
        if current is not None and current.ready:
            for old in procs:
                if old.generation < generation and not old.stopping:
                    state.event("Normal", "Replaced", f"generation {old.generation} (pid {old.pid}) stopped")
                    self._terminate(old)
        for process in procs:
            if process.stopping and process.kill_at is not None and now > process.kill_at:
                self._kill(process)
        self._save(name)

    def _reap(self, name: str, procs: list[Running], generation: int, state: ServerState) -> None:
        for process in list(procs):
            code = process.exit_code()
            if code is None:
                continue
            procs.remove(process)
            process.close()
            if process.stopping and process.generation != generation:
                continue
            uptime = time.time() - process.started_at
            crashes = self._crashes.get(name, 0) + 1 if uptime < CRASH_WINDOW_SECONDS else 1
            self._crashes[name] = crashes
            delay = min(2.0 ** (crashes - 1), MAX_BACKOFF_SECONDS)
            self._next_start[name] = time.time() + delay
            state.restarts += 1
            state.last_exit_code = code
            state.pid = None
            exited = f"pid {process.pid} exited with code {code} after {uptime:.1f} s"
            state.event("Warning", "Exited", exited)
            last_lines = tail(self.layout.log(name), 5).strip()
            detail = f"{exited}; restart {state.restarts} in {delay:.0f} s" + (
                f". Last log lines:\n{last_lines}" if last_lines else ""
            )
            if crashes >= CRASHLOOP_AFTER:
                state.phase, state.reason, state.message = "crashloop", "CrashLoopBackOff", detail
            else:
                state.phase, state.reason, state.message = "starting", "Restarting", detail

    def _launch(
        self, name: str, spec: local_server.LocalServerSpec, generation: int, state: ServerState
    ) -> None:
        # A restart keeps its port, so the router's address stays right; a new generation runs
        # beside the old one until ready, so it needs another.
        same = state.generation == generation and state.port is not None
        port = state.port if same and state.port and port_free(state.port) else free_port()
        log_path = self.layout.log(name)
        if log_path.exists() and log_path.stat().st_size > MAX_LOG_BYTES:
            log_path.replace(log_path.with_suffix(".log.1"))
        log_file = log_path.open("ab")
        try:
            popen = subprocess.Popen(  # noqa: S603 -- our own interpreter and arguments
                local_server.serve_command(self.python, spec, port),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.layout.directory(name),
                start_new_session=True,  # Ctrl+C on `atoll up` reaches the supervisor, not the servers
            )
        except OSError as exc:
            log_file.close()
            state.phase, state.reason, state.message = "failed", "StartError", f"cannot start: {exc}"
            self._next_start[name] = time.time() + MAX_BACKOFF_SECONDS
            return
        now = time.time()
        self._procs[name].append(
            Running(popen.pid, port, generation, now, spec.drain_seconds, popen=popen, log_file=log_file)
        )
        state.generation, state.pid, state.port, state.started_at = generation, popen.pid, port, now
        if state.phase != "crashloop":
            state.phase = "starting"
            state.reason, state.message = None, f"pid {popen.pid} starting on 127.0.0.1:{port}"
        state.event("Normal", "Started", f"pid {popen.pid} on 127.0.0.1:{port} (generation {generation})")

    def _adopt(self, name: str) -> None:
        """Take over a server a previous supervisor left running, if it is still the right one."""
        desired = read_json(self.layout.desired(name))
        state = self.layout.read_state(name)
        if desired is None or state is None or state.pid is None or state.port is None:
            return
        try:
            spec = local_server.parse(desired["object"])
        except (KeyError, ValueError):
            return
        if not (pid_alive(state.pid) and is_model_server_of(state.pid, name)):
            gone = f"the server recorded for it (pid {state.pid}) is not running; starting a new one"
            state.pid, state.phase, state.reason, state.message = None, "starting", None, gone
            state.event("Normal", "NotAdopted", gone)
            self._states[name] = state
            self._save(name)
            return
        generation = int(desired["generation"])
        if (
            state.generation == generation
            and probe_ready(state.port, timeout=2.0)
            and serves(state.port, spec.model, spec.version)
        ):
            started = state.started_at or time.time()
            process = Running(state.pid, state.port, generation, started, spec.drain_seconds, ready=True)
            self._procs.setdefault(name, []).append(process)
            state.phase, state.reason, state.message = "ready", None, None
            state.event("Normal", "Adopted", f"pid {state.pid} on 127.0.0.1:{state.port} re-adopted")
        else:
            stale = Running(state.pid, state.port, state.generation, time.time(), spec.drain_seconds)
            self._procs.setdefault(name, []).append(stale)
            state.event("Warning", "Replaced", f"pid {state.pid} left running is not ready or not this build")
            self._terminate(stale)
        self._states[name] = state
        self._save(name)

    def _retire(self, name: str, procs: list[Running]) -> None:
        """No longer desired: stop its processes; once they are gone, remove its directory."""
        for process in procs:
            if not process.stopping:
                self._terminate(process)
            elif process.kill_at is not None and time.time() > process.kill_at:
                self._kill(process)
        for process in [p for p in procs if p.exit_code() is not None]:
            procs.remove(process)
            process.close()
        if procs:
            return
        del self._procs[name]
        self._states.pop(name, None)
        self._written.pop(name, None)
        self._crashes.pop(name, None)
        self._next_start.pop(name, None)
        directory = self.layout.directory(name)
        try:
            age = time.time() - directory.stat().st_mtime
        except FileNotFoundError:
            return
        # A directory with no desired.json may be one `apply` is writing right now: leave a
        # young one alone unless something ran in it.
        if self.layout.desired(name).exists() or (
            age < NEW_DIRECTORY_SECONDS and not self.layout.state(name).exists()
        ):
            return
        shutil.rmtree(directory, ignore_errors=True)

    # -- signals ----------------------------------------------------------------------------

    def _terminate(self, process: Running) -> None:
        process.stopping = True
        process.kill_at = time.time() + process.drain_seconds + KILL_GRACE_SECONDS
        self._signal(process, signal.SIGTERM)

    def _kill(self, process: Running) -> None:
        self._signal(process, signal.SIGKILL)
        if process.popen is not None:
            try:
                process.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.warning("model server did not die", extra={"pid": process.pid})

    def _signal(self, process: Running, which: signal.Signals) -> None:
        if process.popen is None and not is_model_server_of(process.pid, self._name_of(process)):
            return  # an adopted pid that is now someone else's: never signal it
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, which)

    def _name_of(self, process: Running) -> str:
        return next((name for name, procs in self._procs.items() if process in procs), "")
