"""The Python client of the Atoll API, used by the CLI and by CI scripts.

Configuration, first match wins: explicit arguments, `ATOLL_URL`/`ATOLL_TOKEN`, then the
credentials file that `atoll login` writes (`$XDG_CONFIG_HOME/atoll/credentials.json`).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
OUTCOMES_PATH = "/api/v1/events/outcomes"
#: Statuses worth another try: the platform is unreachable (0), throttling, or failing for a while.
RETRY_STATUSES = frozenset({0, 429, 502, 503, 504})


class ClientError(Exception):
    """The platform refused a call; `detail` is its problem+json message."""

    def __init__(self, status: int, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.body = body or {}


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "atoll" / "credentials.json"


def save_credentials(url: str, token: str) -> Path:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # the mode in os.open applies only when it creates the file
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"url": url, "token": token}, handle)
    return path


def _saved() -> dict[str, str]:
    try:
        data = json.loads(credentials_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)}


@dataclass
class Client:
    url: str
    token: str | None
    timeout: float = 30.0

    @classmethod
    def from_environment(cls, url: str | None = None, token: str | None = None) -> Client:
        saved = _saved()
        return cls(
            url=(url or os.environ.get("ATOLL_URL") or saved.get("url") or DEFAULT_URL).rstrip("/"),
            token=token or os.environ.get("ATOLL_TOKEN") or saved.get("token"),
        )

    def _http(self) -> httpx.Client:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            with self._http() as http:
                response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(0, f"cannot reach Atoll at {self.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            detail = body.get("detail") or response.text[:200] or response.reason_phrase
            raise ClientError(response.status_code, str(detail), body)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def put(self, path: str, body: Any = None) -> Any:
        return self.request("PUT", path, json=body)

    def upload(self, path: str, file: Path, fields: dict[str, str]) -> Any:
        with file.open("rb") as handle:
            return self.request("POST", path, files={"file": (file.name, handle)}, data=fields)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def send_outcomes(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        batch_size: int = 1000,
        retries: int = 4,
        backoff_seconds: float = 0.5,
    ) -> dict[str, int]:
        """Send outcome events in batches; returns the totals (received, inserted, duplicates).

        Each event: `unit_id`, `metric`, optionally `value` (1.0), `ts` (a datetime or ISO 8601
        text with a timezone), `experiment` and `event_id`. An event without an `event_id` gets a
        random one here, before the first try: resending a batch (after a timeout, a 503) is then
        safe, because the platform stores each event id once. A 4xx is not retried: it names
        the field to fix (ClientError).
        """
        if not 1 <= batch_size <= 10_000:
            raise ValueError("batch_size: 1 to 10,000 events per request")
        totals = {"received": 0, "inserted": 0, "duplicates": 0}
        batch: list[dict[str, Any]] = []
        for event in events:
            batch.append(_outcome(event))
            if len(batch) == batch_size:
                self._send_batch(batch, totals, retries, backoff_seconds)
                batch = []
        if batch:
            self._send_batch(batch, totals, retries, backoff_seconds)
        return totals

    def _send_batch(
        self, batch: list[dict[str, Any]], totals: dict[str, int], retries: int, backoff_seconds: float
    ) -> None:
        for attempt in range(retries + 1):
            try:
                answer = self.post(OUTCOMES_PATH, {"events": batch})
                break
            except ClientError as exc:
                if exc.status not in RETRY_STATUSES or attempt == retries:
                    raise
                time.sleep(backoff_seconds * 2**attempt)
        for key in totals:
            totals[key] += int(answer[key])


def _outcome(event: Mapping[str, Any]) -> dict[str, Any]:
    row = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in event.items() if v is not None}
    row.setdefault("event_id", uuid.uuid4().hex)
    return row
