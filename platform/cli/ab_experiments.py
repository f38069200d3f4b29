"""`atoll ab create | list | start | status | stop | conclude`: experiments on a running platform.

Unlike `ab analyze` and `ab power` (computed locally), these talk to the platform through
`atoll.client`, like CI does, with `--json` for scripts. Exit codes: 0 ok, 2 invalid input
(the message names the field), 3 not allowed, 4 not found, 5 conflict (another experiment or
a canary holds the endpoint, a failed promotion gate, a sample ratio mismatch), 6 the
platform is unreachable.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from atoll.cli.ab import _print_analysis, _read_input, _verdict, ab_app
from atoll.cli.output import JsonFlag, call_api, client, console, emit_json, fail, table

API = "/api/v1/experiments"
KeyArgument = Annotated[str, typer.Argument(help="The experiment's key, e.g. checkout-2")]
EVIDENCE_STYLE = {
    "won": "green",
    "non_inferior": "green",
    "lost": "red",
    "inconclusive": "yellow",
    "invalid": "magenta",
}


def _call(method: str, path: str, body: Any = None, *, as_json: bool) -> Any:
    return call_api(
        lambda: client().request(method, path, json=body) if method != "GET" else client().get(path),
        as_json=as_json,
    )


def _summary(experiment: dict[str, Any]) -> None:
    arms = ", ".join(
        f"{a['deployment']} {a['weight']}%" + (" (control)" if a["control"] else "")
        for a in experiment["arms"]
    )
    console.print(f"[bold]{experiment['key']}[/] on {experiment['endpoint']}: {experiment['state']} — {arms}")


def create(
    file: Annotated[
        str, typer.Argument(help="Experiment definition JSON (docs/experiments.md), or - for stdin")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Define an experiment (a draft): arms on an endpoint's deployments, metrics, hypothesis."""
    try:
        body = json.loads(_read_input(file))
    except json.JSONDecodeError as exc:
        fail(f"FILE: not JSON: {exc}", 2)
    created = _call("POST", API, body, as_json=as_json)
    if as_json:
        emit_json(created)
        return
    _summary(created)
    if created.get("planned_n_per_arm"):
        console.print(f"planned: {created['planned_n_per_arm']:,} units per arm")
    console.print(f"start it with: atoll ab start {created['key']}", style="dim")


def list_experiments(
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint's experiments")] = None,
    state: Annotated[str | None, typer.Option(help="draft, running, stopped or concluded")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Experiments, newest first."""
    params = "&".join(f"{k}={v}" for k, v in (("endpoint", endpoint), ("state", state)) if v)
    found = _call("GET", API + (f"?{params}" if params else ""), as_json=as_json)
    if as_json:
        emit_json(found)
        return
    table(
        found["items"],
        [
            ("key", "key"),
            ("endpoint", "endpoint"),
            ("state", "state"),
            ("arms", lambda e: ", ".join(f"{a['deployment']} {a['weight']}%" for a in e["arms"])),
            ("verdict", lambda e: (e.get("verdict") or {}).get("verdict", "")),
            ("started", lambda e: (e.get("started_at") or "")[:19]),
        ],
        title=f"{found['total']} experiment(s)",
    )


def start(key: KeyArgument, as_json: JsonFlag = False) -> None:
    """Start: the endpoint's split takes the arms' weights with the experiment's own salt."""
    started = _call("POST", f"{API}/{key}/start", as_json=as_json)
    emit_json(started) if as_json else _summary(started)


def stop(
    key: KeyArgument,
    reason: Annotated[str, typer.Option(help="Why, for the endpoint's history")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Stop: the endpoint gets back the weights and salt it had before the start."""
    stopped = _call("POST", f"{API}/{key}/stop", {"reason": reason}, as_json=as_json)
    emit_json(stopped) if as_json else _summary(stopped)


def status(key: KeyArgument, as_json: JsonFlag = False) -> None:
    """The live results: progress, SRM, per metric and arm the lifts, p-values and verdicts."""
    found = _call("GET", f"{API}/{key}/results", as_json=as_json)
    if as_json:
        emit_json(found)
        return
    console.print(f"[bold]{key}[/]: {found['state']}, verdict {_verdict_text(found['verdict'])}")
    for arm in found["progress"]:
        planned = f" of {arm['planned']:,} planned" if arm.get("planned") else ""
        console.print(f"  {arm['arm']}: {arm['units']:,} units{planned} ({arm['weight']}% of traffic)")
    if found.get("unexposed_outcomes"):
        console.print(
            f"  {found['unexposed_outcomes']:,} outcome events from units never exposed (not analysed)"
        )
    if not found["valid_p_values"]:
        console.print("  adaptive allocation: p-values are not valid here; read the chances to beat control")
    from atoll.abtest.stats import AnalysisResult

    for section in ("analysis", "secondary"):
        if found.get(section):
            console.print()
            if section == "secondary":
                console.print("[bold]secondary metrics[/] (reported, not decided on)")
            _print_analysis(AnalysisResult.model_validate(found[section]))
    for line in found["reasons"]:
        console.print(f"  {line}", style="dim", highlight=False)


def _verdict_text(verdict: str) -> str:
    mapped = {"won": "ship", "non_inferior": "ship", "lost": "dont_ship", "inconclusive": "keep_running"}
    return f"{verdict} ({_verdict(mapped.get(verdict, 'invalid'))})"


def conclude(
    key: KeyArgument,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote", help="Move the winner's alias through the promotion gates and all traffic to it"
        ),
    ] = False,
    reason: Annotated[str, typer.Option(help="Why, for the audit log")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Record the verdict as evidence on each arm's version (and with --promote, ship the winner).

    A failed gate or a sample ratio mismatch exits 5 and changes nothing.
    """
    concluded = _call(
        "POST", f"{API}/{key}/conclude", {"promote": promote, "reason": reason}, as_json=as_json
    )
    if as_json:
        emit_json(concluded)
        return
    verdict = concluded.get("verdict") or {}
    console.print(f"[bold]{key}[/] concluded: {_verdict_text(verdict.get('verdict', ''))}")
    for item in verdict.get("evidence", []):
        style = EVIDENCE_STYLE.get(item["status"], "white")
        console.print(
            f"  {item['model_name']} v{item['version']} ({item['arm']}): [{style}]{item['status']}[/]"
        )
    promoted = verdict.get("promoted")
    if promoted:
        console.print(
            f"promoted {promoted['model']} v{promoted['version']} to @{promoted['alias']}; "
            f"{promoted['deployment']} takes all traffic"
        )


def register(app: typer.Typer) -> None:
    """Add the experiment commands to `atoll ab` (beside `analyze` and `power`)."""
    for name, command in (
        ("create", create),
        ("list", list_experiments),
        ("start", start),
        ("status", status),
        ("stop", stop),
        ("conclude", conclude),
    ):
        ab_app.command(name)(command)
