"""Progressive delivery commands: `atoll canary start|status|abort` and `atoll shadow start|stop|status`.

Like every client command they talk to the platform's API (`/api/v1/endpoints/{name}/canary`
and `/shadow`), print for a person by default and JSON with `--json`, and exit with the
README's codes (2 invalid input, 4 not found, 5 conflict...). `canary status` exits 1 when
the canary failed, so CI can gate on it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from atoll.cli.output import JsonFlag, call_api, client, console, emit_json, fail

canary_app = typer.Typer(help="Progressive canaries: start, status, abort.", no_args_is_help=True)
shadow_app = typer.Typer(help="Shadow traffic: start, stop, status.", no_args_is_help=True)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: str) -> float:
    """Seconds from `90`, `90s`, `2m`, `1h`, `500ms`."""
    found = _DURATION.match(value.strip())
    if found is None:
        fail(f"--hold: {value!r} is not a duration (e.g. 60s, 2m, 1h)", 2)
    return float(found.group(1)) * _UNIT_SECONDS[found.group(2)]


def parse_steps(value: str) -> list[int]:
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        fail(f"--steps: {value!r} is not a list of percentages (e.g. 5,25,50,100)", 2)


def _show_canary(found: dict[str, Any]) -> None:
    step = found["step"]
    where = f"step {step + 1}/{len(found['steps'])}" if step >= 0 else "starting"
    console.print(
        f"canary {found['id']} on [bold]{found['endpoint']}[/]: {found['stable']} → {found['candidate']}, "
        f"[bold]{found['state']}[/] ({where}, candidate at {found['weight']} %)",
        highlight=False,
    )
    console.print(f"  steps {','.join(str(s) for s in found['steps'])}", highlight=False)
    for label in ("stable", "candidate"):
        reading = found.get(f"{label}_reading")
        if reading:
            rate = reading["error_rate"]
            p99 = reading["p99_ms"]
            console.print(
                f"  {label:9} {reading['requests']} requests, {reading['errors']} 5xx"
                f" (error rate {'—' if rate is None else f'{rate:.3f}'}), p99 "
                f"{'—' if p99 is None else f'{p99:.1f} ms'}",
                highlight=False,
            )
    console.print(
        f"  limits: error rate ≤ {found['max_error_rate']}, p99 ≤ {found['max_p99_ratio']}x stable and "
        f"+{found['max_p99_added_ms']} ms, judged after {found['min_requests']} requests",
        highlight=False,
    )
    if found.get("reason"):
        console.print(f"  {found['reason']}", highlight=False)


@canary_app.command("start")
def canary_start(
    endpoint: str,
    to: Annotated[str, typer.Option("--to", help="The candidate deployment, behind the endpoint")],
    steps: Annotated[
        str, typer.Option(help="The candidate's weight at each step, in percent")
    ] = "5,25,50,100",
    hold: Annotated[str, typer.Option(help="How long each step is held (60s, 2m...)")] = "60s",
    hold_requests: Annotated[
        int | None, typer.Option(min=1, help="Also wait for this many candidate requests per step")
    ] = None,
    max_error_rate: Annotated[float, typer.Option(min=0, max=1, help="Most 5xx share")] = 0.05,
    max_p99_ratio: Annotated[float, typer.Option(min=1, help="Most candidate p99 over stable p99")] = 2.0,
    max_p99_added_ms: Annotated[float, typer.Option(min=0, help="Most p99 added over stable, in ms")] = 10.0,
    min_requests: Annotated[int, typer.Option(min=1, help="Candidate requests before a step is judged")] = 20,
    reason: Annotated[str, typer.Option(help="Why; kept in the audit")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Start moving ENDPOINT's traffic to --to step by step; a guardrail breach rolls it back."""
    body = {
        "to": to,
        "steps": parse_steps(steps),
        "hold_seconds": parse_duration(hold),
        "hold_requests": hold_requests,
        "max_error_rate": max_error_rate,
        "max_p99_ratio": max_p99_ratio,
        "max_p99_added_ms": max_p99_added_ms,
        "min_requests": min_requests,
        "reason": reason,
    }
    found = call_api(lambda: client().post(f"/api/v1/endpoints/{endpoint}/canary", body), as_json=as_json)
    emit_json(found) if as_json else _show_canary(found)


@canary_app.command("status")
def canary_status(endpoint: str, as_json: JsonFlag = False) -> None:
    """The endpoint's latest canary: step, guardrail values, state. Exit 1 when it failed."""
    found = call_api(lambda: client().get(f"/api/v1/endpoints/{endpoint}/canary"), as_json=as_json)
    emit_json(found) if as_json else _show_canary(found)
    if found["state"] == "failed":
        raise typer.Exit(1)


@canary_app.command("abort")
def canary_abort(
    endpoint: str,
    reason: Annotated[str, typer.Option(help="Why; kept in the history and the audit")] = "",
    as_json: JsonFlag = False,
) -> None:
    """All traffic back to the stable deployment; the canary ends aborted."""
    found = call_api(
        lambda: client().post(f"/api/v1/endpoints/{endpoint}/canary/abort", {"reason": reason}),
        as_json=as_json,
    )
    emit_json(found) if as_json else _show_canary(found)


def _show_shadow(found: dict[str, Any]) -> None:
    summary = found["summary"]
    console.print(
        f"shadow {found['id']} on [bold]{found['endpoint']}[/]: {found['share']:g} of requests to "
        f"{found['candidate']}, [bold]{found['state']}[/]",
        highlight=False,
    )
    shown = {k: v for k, v in summary.items() if v is not None}
    console.print(
        "  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
    )


@shadow_app.command("start")
def shadow_start(
    endpoint: str,
    to: Annotated[str, typer.Option("--to", help="The candidate deployment, behind the endpoint at 0 %")],
    share: Annotated[float, typer.Option(min=0, max=1, help="Share of requests mirrored, e.g. 0.1")],
    kind: Annotated[str, typer.Option(help="auto, label, score or ranking")] = "auto",
    top_k: Annotated[int, typer.Option(min=1, help="k of the rank overlap@k")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """Mirror a share of ENDPOINT's requests to --to and compare the predictions."""
    body = {"to": to, "share": share, "kind": kind, "top_k": top_k}
    found = call_api(lambda: client().post(f"/api/v1/endpoints/{endpoint}/shadow", body), as_json=as_json)
    emit_json(found) if as_json else _show_shadow(found)


@shadow_app.command("stop")
def shadow_stop(endpoint: str, as_json: JsonFlag = False) -> None:
    """Stop mirroring; the comparison stays readable with `atoll shadow status`."""
    found = call_api(lambda: client().delete(f"/api/v1/endpoints/{endpoint}/shadow"), as_json=as_json)
    emit_json(found) if as_json else _show_shadow(found)


@shadow_app.command("status")
def shadow_status(endpoint: str, as_json: JsonFlag = False) -> None:
    """The endpoint's latest shadow and its comparison so far."""
    found = call_api(lambda: client().get(f"/api/v1/endpoints/{endpoint}/shadow"), as_json=as_json)
    emit_json(found) if as_json else _show_shadow(found)


def register(app: typer.Typer) -> None:
    app.add_typer(canary_app, name="canary")
    app.add_typer(shadow_app, name="shadow")
