"""Deployment commands: deploy, deployments (list, show, logs, rollback), undeploy, endpoints.

Each talks to the platform through `atoll.client`, like CI does, with `--json` for
scripts and the README's exit codes: 0 ok, 1 the rollout failed, 2 invalid input, 3 not
allowed, 4 not found, 5 conflict, 6 the platform or the target is unreachable.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.syntax import Syntax

from atoll.cli.output import JsonFlag, call_api, client, console, emit_json, err_console, fail, table
from atoll.client import Client

deployments_app = typer.Typer(
    help="Deployments: list (no command), show, logs, rollback.", invoke_without_command=True
)
endpoints_app = typer.Typer(
    help="Endpoints: list (no command), show, create, set, switch, split, history.",
    invoke_without_command=True,
)
ENDED = {"available", "failed", "undeployed"}
STATE_STYLE = {
    "available": "[green]available[/]",
    "failed": "[red]failed[/]",
    "progressing": "[yellow]progressing[/]",
    "applying": "[yellow]applying[/]",
    "pending": "[yellow]pending[/]",
    "undeployed": "[dim]undeployed[/]",
}


def _state(deployment: dict[str, Any]) -> str:
    shown = STATE_STYLE.get(deployment["state"], str(deployment["state"]))
    return shown + (f" ({deployment['reason']})" if deployment.get("reason") else "")


def _watch(api: Client, name: str, timeout: float) -> dict[str, Any]:
    """Poll the rollout until it ends, showing its state, reason and replicas as it goes."""
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {}
    with console.status(f"rolling out {name}...") as spinner:
        while time.monotonic() < deadline:
            found = call_api(lambda: api.get(f"/api/v1/deployments/{name}/status"))
            deployment, rollout = found["deployment"], found.get("rollout") or {}
            replicas = (
                f" {rollout.get('ready_replicas', 0)}/{rollout.get('desired_replicas', '?')} ready"
                if rollout
                else ""
            )
            message = deployment.get("message") or found.get("target_error") or ""
            spinner.update(f"{name}: {_state(deployment)}{replicas} {message[:120]}")
            if deployment["state"] in ENDED:
                return found
            time.sleep(1.0)
    state = found.get("deployment", {}).get("state")
    err_console.print(
        f"[red]error:[/] {name} is still {state} after {timeout:.0f} s: see `atoll deployments show {name}`"
    )
    raise typer.Exit(1)


def _report(found: dict[str, Any]) -> None:
    deployment = found["deployment"]
    console.print(f"[bold]{deployment['name']}[/] revision {deployment['revision']}: {_state(deployment)}")
    if deployment.get("message"):
        console.print(f"  {deployment['message']}", highlight=False)
    if deployment.get("endpoint"):
        console.print(f"  endpoint {deployment['endpoint']} ({deployment.get('weight', 0)}% of its traffic)")


def deploy(
    model: Annotated[str, typer.Argument(help="MODEL, or MODEL@ALIAS to follow the alias")],
    backend: Annotated[str, typer.Option(help="The build's backend: gpu, asic, cpu...")],
    version: Annotated[int | None, typer.Argument(help="The version (none when following an alias)")] = None,
    follow: Annotated[
        str | None, typer.Option(help="Follow this alias: roll when it moves (the endpoint's on_alias_move)")
    ] = None,
    endpoint: Annotated[str | None, typer.Option(help="Endpoint to serve it (created if new)")] = None,
    name: Annotated[str | None, typer.Option(help="Deployment name (default MODEL-vVERSION-BACKEND)")] = None,
    target: Annotated[str | None, typer.Option(help="local or kubernetes (default: the platform's)")] = None,
    replicas: Annotated[int, typer.Option(min=1, max=1000)] = 1,
    max_replicas: Annotated[
        int | None, typer.Option(min=1, max=1000, help="Kubernetes: autoscale up to")
    ] = None,
    build_id: Annotated[int | None, typer.Option(help="A given build (default: the newest)")] = None,
    switch: Annotated[bool, typer.Option(help="Make the endpoint serve it once available")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what the target would apply")] = False,
    wait: Annotated[bool, typer.Option(help="Watch the rollout until available or failed")] = True,
    timeout: Annotated[float, typer.Option(help="Longest watch, in seconds")] = 900.0,
    reason: Annotated[str, typer.Option(help="Why; kept in the events and the audit")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Deploy a version's build (or follow an alias); watch the rollout. Exit 1 when it fails."""
    if "@" in model:
        model, _, follow = model.partition("@")
    if version is None and follow is None:
        fail("give a VERSION, or MODEL@ALIAS (or --follow ALIAS) to follow an alias", 2)
    body = {
        "model": model,
        "version": version,
        "follow": follow,
        "backend": backend,
        "endpoint": endpoint,
        "name": name,
        "target": target,
        "replicas": replicas,
        "max_replicas": max_replicas,
        "build_id": build_id,
        "switch": switch,
        "dry_run": dry_run,
        "reason": reason,
    }
    api = client()
    created = call_api(lambda: api.post("/api/v1/deployments", body), as_json=as_json)
    if dry_run:
        if as_json:
            emit_json(created)
            return
        console.print(
            f"[bold]{created['deployment']}[/] on {created['target']}: revision {created['revision']}, "
            f"build {created['build_id']} (dry run: nothing applied)"
        )
        for obj in created["objects"]:
            console.print(f"[bold]{obj['action']}[/] {obj['kind']}/{obj['name']}")
            if obj["diff"]:
                console.print(Syntax(obj["diff"], "diff", background_color="default"))
        return
    if not as_json:
        console.print(
            f"deploying [bold]{created['name']}[/] revision {created['revision']} "
            f"(build {created['build_id']}) on {created['target']}; job {created['rollout_job_id']}"
        )
    if not wait:
        emit_json(created) if as_json else None
        return
    found = _watch(api, created["name"], timeout)
    if as_json:
        emit_json(found)
    else:
        _report(found)
    if found["deployment"]["state"] != "available":
        raise typer.Exit(1)


@deployments_app.callback()
def deployments_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only this state")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint's")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model's")] = None,
    every: Annotated[bool, typer.Option("--all", help="Undeployed ones too")] = False,
    limit: int = 50,
    offset: int = 0,
    as_json: JsonFlag = False,
) -> None:
    """Deployments, newest first: state, target, backend, model version, endpoint."""
    if ctx.invoked_subcommand is not None:
        return
    params = {
        "state": state,
        "endpoint": endpoint,
        "model": model,
        "include_undeployed": every or state == "undeployed",
        "limit": limit,
        "offset": offset,
    }
    page = call_api(lambda: client().get("/api/v1/deployments", **params))
    if as_json:
        emit_json(page)
        return
    table(
        page["items"],
        [
            ("name", "name"),
            ("state", _state),
            ("target", "target"),
            ("backend", "backend"),
            ("model", lambda d: f"{d['model_name']} v{d['version']}"),
            ("endpoint", lambda d: f"{d['endpoint']} ({d['weight']}%)" if d["endpoint"] else "—"),
            ("rev", "revision"),
        ],
        title=f"{page['total']} deployments",
    )


@deployments_app.command("show")
def deployments_show(name: str, as_json: JsonFlag = False) -> None:
    """A deployment: state, what the target reports (pods or the local process), events, revisions."""
    api = client()
    found = call_api(lambda: api.get(f"/api/v1/deployments/{name}/status"))
    events = call_api(lambda: api.get(f"/api/v1/deployments/{name}/events", limit=20))
    revisions = call_api(lambda: api.get(f"/api/v1/deployments/{name}/revisions"))
    if as_json:
        emit_json({**found, "events": events["events"], "revisions": revisions})
        return
    deployment = found["deployment"]
    _report(found)
    console.print(
        f"  {deployment['model_name']} v{deployment['version']}, build {deployment['build_id']} "
        f"({deployment['backend']}) on {deployment['target']}; address {deployment['address'] or '—'}"
    )
    rollout = found.get("rollout")
    if found.get("target_error"):
        console.print(f"  [yellow]target:[/] {found['target_error']}", highlight=False)
    if rollout and rollout["pods"]:
        table(
            rollout["pods"],
            [
                ("pod", "name"),
                ("phase", "phase"),
                ("ready", "ready"),
                ("node", lambda p: p["node"] or "—"),
                ("restarts", "restarts"),
                ("reason", lambda p: p["reason"] or ""),
            ],
        )
    table(
        events["events"],
        [
            ("when", lambda e: (e["at"] or "")[:19]),
            ("source", "source"),
            ("type", "type"),
            ("reason", "reason"),
            ("message", lambda e: e["message"][:100]),
        ],
        title="events",
    )
    table(
        revisions,
        [
            ("rev", lambda r: f"{r['revision']}{' *' if r['current'] else ''}"),
            ("version", "version"),
            ("build", "build_id"),
            ("cause", "cause"),
            ("by", "created_by"),
        ],
        title="revisions",
    )


@deployments_app.command("logs")
def deployments_logs(name: str, tail: Annotated[int, typer.Option(min=1, max=5000)] = 200) -> None:
    """The last lines of each model server's log."""
    found = call_api(lambda: client().get(f"/api/v1/deployments/{name}/logs", tail=tail))
    for log in found["logs"]:
        console.rule(log["pod"])
        if log.get("error"):
            console.print(f"[yellow]{log['error']}[/]")
        console.out(log["text"], end="", highlight=False)


@deployments_app.command("rollback")
def deployments_rollback(
    name: str,
    reason: Annotated[str, typer.Option(help="Why; kept in the events and the audit")] = "",
    wait: Annotated[bool, typer.Option(help="Watch the rollout")] = True,
    timeout: float = 900.0,
    as_json: JsonFlag = False,
) -> None:
    """Back to the previous revision (rolled out as a new one). Exit 1 when the rollout fails."""
    api = client()
    rolled = call_api(
        lambda: api.post(f"/api/v1/deployments/{name}/rollback", {"reason": reason}), as_json=as_json
    )
    if not as_json:
        console.print(
            f"rolling [bold]{name}[/] back to v{rolled['version']} as revision {rolled['revision']}"
        )
    if not wait:
        emit_json(rolled) if as_json else None
        return
    found = _watch(api, name, timeout)
    emit_json(found) if as_json else _report(found)
    if found["deployment"]["state"] != "available":
        raise typer.Exit(1)


def undeploy(
    name: str,
    force: Annotated[bool, typer.Option(help="Also when it serves its endpoint's traffic")] = False,
    reason: Annotated[str, typer.Option(help="Why; kept in the events and the audit")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Delete everything the target applied for a deployment, and nothing else."""
    done = call_api(
        lambda: client().request(
            "DELETE", f"/api/v1/deployments/{name}", params={"force": force, "reason": reason}
        ),
        as_json=as_json,
    )
    if as_json:
        emit_json(done)
    else:
        console.print(f"undeployed [bold]{name}[/]: deleted {', '.join(done['deleted']) or 'nothing'}")


def _endpoint_row(e: dict[str, Any]) -> str:
    return ", ".join(f"{r['deployment']} {r['weight']}%" for r in e["routes"]) or "—"


@endpoints_app.callback()
def endpoints_list(ctx: typer.Context, limit: int = 50, offset: int = 0, as_json: JsonFlag = False) -> None:
    """Endpoints: their stable URL and the deployments behind them with their weights."""
    if ctx.invoked_subcommand is not None:
        return
    page = call_api(lambda: client().get("/api/v1/endpoints", limit=limit, offset=offset))
    if as_json:
        emit_json(page)
        return
    table(
        page["items"],
        [
            ("name", "name"),
            ("active", lambda e: e["active"] or "—"),
            ("routes", _endpoint_row),
            ("url", "url"),
        ],
        title=f"{page['total']} endpoints",
    )


@endpoints_app.command("show")
def endpoints_show(name: str, as_json: JsonFlag = False) -> None:
    found = call_api(lambda: client().get(f"/api/v1/endpoints/{name}"))
    if as_json:
        emit_json(found)
        return
    console.print(f"[bold]{found['name']}[/] {found['url']} active: {found['active'] or '—'}")
    table(
        found["routes"],
        [
            ("deployment", "deployment"),
            ("weight", lambda r: f"{r['weight']}%"),
            ("state", lambda r: STATE_STYLE.get(r["state"], r["state"])),
            ("model", lambda r: f"{r['model_name']} v{r['version']}"),
            ("backend", "backend"),
            ("target", "target"),
        ],
    )


@endpoints_app.command("create")
def endpoints_create(
    name: str, description: Annotated[str, typer.Option()] = "", as_json: JsonFlag = False
) -> None:
    """An endpoint with no deployment yet (`atoll deploy --endpoint` creates one too)."""
    created = call_api(
        lambda: client().post("/api/v1/endpoints", {"name": name, "description": description}),
        as_json=as_json,
    )
    emit_json(created) if as_json else console.print(f"created endpoint [bold]{name}[/] at {created['url']}")


@endpoints_app.command("switch")
def endpoints_switch(
    name: str,
    to: Annotated[str, typer.Option("--to", help="The deployment to serve all traffic")],
    reason: Annotated[str, typer.Option(help="Why; kept in the history")] = "",
    as_json: JsonFlag = False,
) -> None:
    """All traffic to one available deployment at once; the previous one stays warm (blue/green)."""
    found = call_api(
        lambda: client().post(f"/api/v1/endpoints/{name}/switch", {"to": to, "reason": reason}),
        as_json=as_json,
    )
    emit_json(found) if as_json else console.print(
        f"[green]{name}[/] now → {found['active']} ({_endpoint_row(found)})"
    )


@endpoints_app.command("split")
def endpoints_split(
    name: str,
    weights: Annotated[list[str], typer.Argument(help="DEPLOYMENT=PERCENT ..., summing to 100")],
    reason: Annotated[str, typer.Option(help="Why; kept in the history")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Set the weights at once (e.g. `atoll endpoints split scoring v1=90 v2=10`); others get 0.

    With a unit key (the X-Atoll-Unit header, or the body field `atoll endpoints set
    --unit-field` names) each unit sticks to its deployment, and raising one weight moves
    only the units that must move.
    """
    parsed: dict[str, int] = {}
    for item in weights:
        deployment, _, percent = item.partition("=")
        if not deployment or not percent.strip().isdigit():
            fail(f"{item!r} is not DEPLOYMENT=PERCENT (e.g. {name}-v2=10)", 2)
        parsed[deployment] = int(percent)
    found = call_api(
        lambda: client().put(f"/api/v1/endpoints/{name}/split", {"weights": parsed, "reason": reason}),
        as_json=as_json,
    )
    emit_json(found) if as_json else console.print(f"[green]{name}[/]: {_endpoint_row(found)}")


@endpoints_app.command("set")
def endpoints_set(
    name: str,
    unit_field: Annotated[
        str | None,
        typer.Option(help="JSON body field holding the unit key (dotted path; OIP: an input tensor's name)"),
    ] = None,
    unit_header: Annotated[
        str | None, typer.Option(help="Header holding the unit key (X-Atoll-Unit)")
    ] = None,
    description: Annotated[str | None, typer.Option()] = None,
    reset: Annotated[
        list[str] | None, typer.Option(help="A setting to put back to its default (repeatable)")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why; kept in the audit log")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Change an endpoint's description or its settings (where the router finds a request's unit)."""
    settings: dict[str, str | None] = dict.fromkeys(reset or [])
    if unit_field is not None:
        settings["unit_field"] = unit_field
    if unit_header is not None:
        settings["unit_header"] = unit_header
    body = {"description": description, "settings": settings or None, "reason": reason}
    found = call_api(
        lambda: client().request("PATCH", f"/api/v1/endpoints/{name}", json=body), as_json=as_json
    )
    if as_json:
        emit_json(found)
        return
    shown = ", ".join(f"{k}={v}" for k, v in found["settings"].items()) or "defaults"
    console.print(f"[green]{name}[/]: settings {shown}")


@endpoints_app.command("history")
def endpoints_history(
    name: str,
    limit: int = 50,
    at: Annotated[
        str | None,
        typer.Option(help="What served at this time instead (ISO 8601, e.g. 2026-11-27T10:00:00Z)"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every change of the endpoint's routes: from, to, who, why, which job; or, with --at, what
    served its traffic then (deployment, weight, model version, backend)."""
    if at is not None:
        served = call_api(lambda: client().get(f"/api/v1/endpoints/{name}/history", at=at), as_json=as_json)
        if as_json:
            emit_json(served)
            return
        if served["change_at"] is None:
            console.print(f"{name} had no traffic split at {served['at']} (it did not exist yet)")
            return
        table(
            served["routes"],
            [
                ("deployment", "deployment"),
                ("weight", lambda r: f"{r['weight']}%"),
                ("model", lambda r: f"{r['model_name']} v{r['version']}" if r["model_name"] else "—"),
                ("backend", lambda r: r["backend"] or "—"),
                ("revision", lambda r: r["revision"] or "—"),
            ],
            title=f"{name} at {served['at'][:19]} "
            f"(split set {served['change_at'][:19]}, {served['change_kind']})",
        )
        return
    page = call_api(lambda: client().get(f"/api/v1/endpoints/{name}/history", limit=limit))
    if as_json:
        emit_json(page)
        return

    def weights(w: dict[str, int]) -> str:
        return ", ".join(f"{d} {p}%" for d, p in w.items()) or "—"

    table(
        page["items"],
        [
            ("when", lambda c: c["at"][:19]),
            ("kind", "kind"),
            ("from", lambda c: weights(c["from_weights"])),
            ("to", lambda c: weights(c["to_weights"])),
            ("who", "actor"),
            ("why", "reason"),
            ("job", lambda c: c["job_id"] or "—"),
        ],
        title=f"{name}: history",
    )


def register(app: typer.Typer) -> None:
    app.command()(deploy)
    app.command()(undeploy)
    app.add_typer(deployments_app, name="deployments")
    app.add_typer(endpoints_app, name="endpoints")
