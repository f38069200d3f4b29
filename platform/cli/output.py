"""Shared CLI output: tables or JSON, and exit codes that CI can act on."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from atoll.client import Client, ClientError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

# Exit codes: 0 ok, 1 failure (e.g. a failed gate), 2 invalid input, 3 not signed in or
# not allowed, 4 not found, 5 conflict, 6 platform unreachable or unavailable.
EXIT_FOR_STATUS = {400: 2, 401: 3, 403: 3, 404: 4, 409: 5, 413: 2, 422: 2, 503: 6, 0: 6}


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def client_errors() -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        fail(exc.detail, EXIT_FOR_STATUS.get(exc.status, 1))


def client() -> Client:
    return Client.from_environment()


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str | Callable[[dict[str, Any]], Any]]],
    *,
    title: str | None = None,
) -> None:
    view = Table(title=title, header_style="bold")
    for header, _ in columns:
        view.add_column(header)
    for row in rows:
        view.add_row(*(str(key(row) if callable(key) else row.get(key, "")) for _, key in columns))
    console.print(view)


def call_api(
    fn: Callable[[], Any],
    *,
    as_json: bool = False,
    explain: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """Call the platform; on a refusal, print it (as JSON with --json) and exit with its code.

    `explain` prints more of a refusal's body for people (e.g. a promotion's gate table).
    """
    try:
        return fn()
    except ClientError as exc:
        if as_json:
            emit_json(exc.body or {"detail": exc.detail})
        elif explain is not None and exc.body:
            explain(exc.body)
        fail(exc.detail, EXIT_FOR_STATUS.get(exc.status, 1))
