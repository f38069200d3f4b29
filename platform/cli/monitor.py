"""Drift monitor commands: `atoll monitor create FILE | reference NAME | run NAME [--wait] |
status NAME | list`.

`create` reads a YAML or JSON file with the fields of `POST /api/v1/monitors`, plus an
optional `reference_file` (CSV or Parquet, relative to the file) that is uploaded right
after; `reference: {source: training_data}` in the file takes the served version's training
data from MLflow instead. `reference NAME` replaces the reference later (a file, or
`--training-data`, e.g. after a promotion). Exit codes as elsewhere (2 invalid input, 3 not
allowed, 4 not found, 5 conflict, 6 unreachable); `run --wait` exits 1 when the run failed,
found drift or found model quality below the reference by more than the label spec allows
(`degraded`), so CI can gate on it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from atoll.cli.output import JsonFlag, call_api, client, console, emit_json, fail, table

monitor_app = typer.Typer(help="Drift monitors: create, reference, run, status, list.", no_args_is_help=True)
FINAL = {"succeeded", "no_data", "failed"}
STATUS_STYLE = {
    "ok": "[green]ok[/]",
    "drift": "[red]drift[/]",
    "degraded": "[yellow]degraded[/]",
    "failed": "[red]failed[/]",
    "no_data": "no data",
}


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", 2)
    is_yaml = path.suffix.lower() in {".yaml", ".yml"}
    try:
        if is_yaml:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # json's ValueError or yaml's YAMLError
        fail(f"{path} is not valid {'YAML' if is_yaml else 'JSON'}: {exc}", 2)
    if not isinstance(data, dict):
        fail(f"{path}: expected a mapping of monitor fields", 2)
    return data


@monitor_app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="YAML or JSON: name, endpoint, spec, ... [reference_file]")],
    as_json: JsonFlag = False,
) -> None:
    """Create a monitor from FILE and upload its reference_file, if it names one."""
    body = _read_spec(file)
    reference = body.pop("reference_file", None)
    api = client()
    created = call_api(lambda: api.post("/api/v1/monitors", body), as_json=as_json)
    if reference:
        path = (file.parent / str(reference)).resolve()
        if not path.is_file():
            fail(
                f"reference_file {path} does not exist (monitor {created['name']} was created without one)", 2
            )
        call_api(
            lambda: api.upload(f"/api/v1/monitors/{created['name']}/reference", path, {}), as_json=as_json
        )
        created = call_api(lambda: api.get(f"/api/v1/monitors/{created['name']}"), as_json=as_json)
    if as_json:
        emit_json(created)
        return
    if created.get("reference"):
        console.print(_reference_line(created, created["reference"]), highlight=False)
    else:
        console.print(f"monitor [bold]{created['name']}[/] on {created['endpoint']}: no reference yet")


def _reference_line(monitor: dict[str, Any], reference: dict[str, Any]) -> str:
    origin = reference["source"]
    if origin == "training_data":
        origin = f"training data of {monitor['reference_model']} v{monitor['reference_version']}"
    where = f" ({reference['filename']})" if reference.get("filename") else ""
    return f"monitor [bold]{monitor['name']}[/]: reference {reference['rows']} rows, {origin}{where}"


@monitor_app.command("reference")
def reference(
    name: Annotated[str, typer.Argument(help="Monitor name")],
    training_data: Annotated[
        bool, typer.Option("--training-data", help="A model version's training data, from MLflow")
    ] = False,
    model: Annotated[str | None, typer.Option(help="With --training-data: the model")] = None,
    version: Annotated[int | None, typer.Option(help="With --training-data: its version")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="A CSV or Parquet file to upload")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Replace the reference set: upload --file, or --training-data of a version (default: the
    version the endpoint's stable deployment serves now)."""
    if training_data == (file is not None):
        fail("give exactly one of --training-data or --file", 2)
    if (model is None) != (version is None) or (file is not None and model is not None):
        fail("--model and --version go together, with --training-data", 2)
    api = client()
    if file is not None:
        if not file.is_file():
            fail(f"{file} does not exist", 2)
        loaded = call_api(lambda: api.upload(f"/api/v1/monitors/{name}/reference", file, {}), as_json=as_json)
    else:
        body = {"model": model, "version": version} if model is not None else {}
        loaded = call_api(
            lambda: api.post(f"/api/v1/monitors/{name}/reference/training-data", body), as_json=as_json
        )
    monitor = call_api(lambda: api.get(f"/api/v1/monitors/{name}"), as_json=as_json)
    if as_json:
        emit_json(monitor)
        return
    console.print(_reference_line(monitor, loaded), highlight=False)


def _wait(name: str, run_id: int, timeout: float) -> dict[str, Any]:
    api = client()
    deadline = time.monotonic() + timeout
    with console.status(f"checking {name}...") as spinner:
        while True:
            run = call_api(lambda: api.get(f"/api/v1/monitors/{name}/runs/{run_id}"))
            spinner.update(f"{name}: run {run_id} {run['state']}")
            if run["state"] in FINAL:
                return dict(run)
            if time.monotonic() > deadline:
                fail(f"run {run_id} is still {run['state']} after {timeout:.0f} s (is a worker running?)", 1)
            time.sleep(1.0)


@monitor_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="Monitor name")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the verdict; exit 1 on drift or failure")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 600.0,
    as_json: JsonFlag = False,
) -> None:
    """Check the window that ends now (a job on the worker)."""
    queued = call_api(lambda: client().post(f"/api/v1/monitors/{name}/runs"), as_json=as_json)
    if not wait:
        if as_json:
            emit_json(queued)
        else:
            console.print(f"run {queued['run_id']} queued (job {queued['job_id']})")
        return
    result = _wait(name, queued["run_id"], timeout)
    if as_json:
        emit_json(result)
    else:
        _print_run(result)
    if result["state"] == "failed" or result.get("status") in ("drift", "degraded"):
        raise typer.Exit(1)


def _print_run(run: dict[str, Any]) -> None:
    verdict = STATUS_STYLE.get(run.get("status") or run["state"], run["state"])
    share = f", drifted share {run['drift_share']:.0%}" if run.get("drift_share") is not None else ""
    console.print(f"run {run['id']} ({run['group_key']}): {verdict}, {run['rows']} rows{share}")
    if run.get("message"):
        console.print(f"  {run['message']}", highlight=False)
    drifted = [c["column"] for c in run.get("columns", []) if c.get("drifted")]
    if drifted:
        console.print(f"  drifted columns: {', '.join(drifted)}")
    if run.get("quality"):
        console.print(f"  model quality: {quality_summary(run['quality'])}", highlight=False)


def quality_summary(quality: dict[str, Any] | None) -> str:
    """One line of a run row's model quality: status, coverage, then each metric vs the reference."""
    if not quality:
        return "—"
    coverage = "" if quality.get("coverage") is None else f", {quality['coverage']:.0%} labelled"
    head = f"{quality['status']} ({quality['labelled']} labels{coverage})"
    reference = quality.get("reference") or {}
    parts = [
        f"{name} {value:.3g}" + (f" (ref {reference[name]:.3g})" if reference.get(name) is not None else "")
        for name, value in quality.get("current", {}).items()
        if value is not None
    ]
    if quality.get("breached"):
        head += f"; breached: {', '.join(quality['breached'])}"
    return head + (": " + ", ".join(parts) if parts else "")


@monitor_app.command("status")
def status(name: Annotated[str, typer.Argument(help="Monitor name")], as_json: JsonFlag = False) -> None:
    """The monitor's status and its latest runs."""
    api = client()
    monitor = call_api(lambda: api.get(f"/api/v1/monitors/{name}"), as_json=as_json)
    latest = call_api(lambda: api.get(f"/api/v1/monitors/{name}/runs", limit=10), as_json=as_json)
    if as_json:
        emit_json({"monitor": monitor, "runs": latest["items"]})
        return
    console.print(
        f"[bold]{monitor['name']}[/] on {monitor['endpoint']}: "
        f"{STATUS_STYLE.get(monitor['status'], monitor['status'])}"
        f" (every {monitor['schedule_seconds']} s over {monitor['window_seconds']} s"
        f"{'' if monitor['enabled'] else ', disabled'})"
    )
    labels = monitor.get("labels")
    if labels:
        console.print(
            f"labels: outcome metric {labels['metric']} as {labels['column']} ({labels['task']}, "
            f"within {labels['attribution_seconds']} s)",
            highlight=False,
        )
    table(
        latest["items"],
        [
            ("run", "id"),
            ("window end", lambda r: r["window_end"][:19]),
            ("group", "group_key"),
            ("state", "state"),
            ("status", lambda r: r["status"] or "—"),
            ("rows", "rows"),
            ("share", lambda r: "—" if r["drift_share"] is None else f"{r['drift_share']:.0%}"),
            ("quality", lambda r: quality_summary(r.get("quality"))),
        ],
    )


@monitor_app.command("list")
def list_monitors(
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint's")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every monitor with its status."""
    page = call_api(lambda: client().get("/api/v1/monitors", endpoint=endpoint, limit=500), as_json=as_json)
    if as_json:
        emit_json(page)
        return
    table(
        page["items"],
        [
            ("name", "name"),
            ("endpoint", "endpoint"),
            ("status", lambda m: STATUS_STYLE.get(m["status"], m["status"])),
            ("split by", lambda m: ", ".join(m["split_by"]) or "—"),
            ("last run", lambda m: (m["last_run_at"] or "—")[:19]),
        ],
    )


def register(app: typer.Typer) -> None:
    app.add_typer(monitor_app, name="monitor")
