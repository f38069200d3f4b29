"""What the local target keeps on disk, shared by the target (any process) and its supervisor.

Under `<data_dir>/local-target/`:

- `supervisor.json`: the supervisor's pid and heartbeat; a stale heartbeat means no
  supervisor runs, and the target says so instead of waiting forever;
- `<deployment>/desired.json`: the object last applied and its generation (written by
  `apply`, removed by `delete`);
- `<deployment>/state.json`: what the supervisor runs for it: pid, port, generation,
  phase, restarts, last exit, recent events (written by the supervisor only);
- `<deployment>/server.log`: the model server's output.

Every write is a whole-file replace (write, fsync, rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = "local-target"
DESIRED, STATE, LOG, SUPERVISOR = "desired.json", "state.json", "server.log", "supervisor.json"
HEARTBEAT_SECONDS = 0.5
STALE_AFTER_SECONDS = 5.0
MAX_EVENTS = 20


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str
    at: float = field(default_factory=time.time)
    count: int = 1


@dataclass
class ServerState:
    """The supervisor's record of one deployment's process."""

    generation: int = 0
    pid: int | None = None
    port: int | None = None
    phase: str = "starting"  # starting | ready | crashloop | failed | stopped
    reason: str | None = None
    message: str | None = None
    started_at: float | None = None
    ready_at: float | None = None
    restarts: int = 0
    last_exit_code: int | None = None
    events: list[Event] = field(default_factory=list)

    def event(self, type_: str, reason: str, message: str) -> None:
        last = self.events[-1] if self.events else None
        if last is not None and (last.reason, last.message) == (reason, message):
            last.count += 1
            last.at = time.time()
        else:
            self.events.append(Event(type_, reason, message))
            del self.events[:-MAX_EVENTS]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ServerState | None:
        if data is None:
            return None
        events = [Event(**e) for e in data.get("events", [])]
        return cls(**{**data, "events": events})


class Layout:
    """Paths of the local target under one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir.resolve() / ROOT

    def directory(self, name: str) -> Path:
        return self.root / name

    def desired(self, name: str) -> Path:
        return self.root / name / DESIRED

    def state(self, name: str) -> Path:
        return self.root / name / STATE

    def log(self, name: str) -> Path:
        return self.root / name / LOG

    @property
    def supervisor(self) -> Path:
        return self.root / SUPERVISOR

    def names(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                yield entry.name

    def read_state(self, name: str) -> ServerState | None:
        return ServerState.from_json(read_json(self.state(name)))

    def supervisor_alive(self) -> bool:
        beat = read_json(self.supervisor)
        if beat is None:
            return False
        return time.time() - float(beat.get("heartbeat", 0)) < STALE_AFTER_SECONDS and pid_alive(
            int(beat.get("pid", 0))
        )


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:  # a zombie (exited, not yet reaped) is not alive
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_model_server_of(pid: int, name: str) -> bool:
    """Whether `pid` runs `atoll serve ... --deployment <name>` (pids are reused: check first)."""
    args = command_line(pid)
    if "serve" not in args or "--deployment" not in args:
        return False
    index = args.index("--deployment")
    return index + 1 < len(args) and args[index + 1] == name


def tail(path: Path, lines: int, max_bytes: int = 256 * 1024) -> str:
    """The last `lines` lines of a file, reading at most `max_bytes` from its end."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(size - max_bytes, 0))
            data = handle.read()
    except FileNotFoundError:
        return ""
    text = data.decode(errors="replace").splitlines()
    return "\n".join(text[-lines:]) + ("\n" if text else "")
