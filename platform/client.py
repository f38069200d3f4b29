"""The Python client of the Atoll API, used by the CLI and by CI scripts.

Configuration, first match wins: explicit arguments, `ATOLL_URL`/`ATOLL_TOKEN`, then the
credentials file that `atoll login` writes (`$XDG_CONFIG_HOME/atoll/credentials.json`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


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
