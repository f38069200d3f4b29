"""Registry commands: models, registration from CI, promotions, history, rollback."""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from typer.core import TyperGroup

from atoll.cli.output import EXIT_FOR_STATUS, JsonFlag, call_api, client, console, emit_json, fail, table

models_app = typer.Typer(help="Registered models and versions (MLflow-backed).", no_args_is_help=True)
policy_app = typer.Typer(help="Promotion policies: the gates per model and alias.", no_args_is_help=True)


def _path(name: str) -> str:
    return quote(name, safe="")


def _call(fn: Callable[[], Any], *, as_json: bool = False) -> Any:
    """`call_api`, printing a refusal's promotion gates (if any) for people."""
    return call_api(fn, as_json=as_json, explain=_explain_gates)


def _explain_gates(refusal: dict[str, Any]) -> None:
    if refusal.get("gates"):
        _gate_table(refusal["gates"])


def _gate_table(gates: list[dict[str, Any]]) -> None:
    rows = [{**g, "result": "[green]pass[/]" if g["passed"] else "[red]FAIL[/]"} for g in gates]
    table(rows, [("gate", "gate"), ("result", "result"), ("reason", "reason")], title="Promotion gates")


@models_app.command("list")
def models_list(
    q: Annotated[str | None, typer.Option(help="Name contains")] = None,
    tag: Annotated[str | None, typer.Option(help="key or key=value")] = None,
    team: Annotated[str | None, typer.Option()] = None,
    alias: Annotated[str | None, typer.Option(help="Has this alias")] = None,
    limit: int = 50,
    offset: int = 0,
    as_json: JsonFlag = False,
) -> None:
    """List models from the synced cache."""
    params = {"q": q, "tag": tag, "team": team, "alias": alias, "limit": limit, "offset": offset}
    page = _call(lambda: client().get("/api/v1/models", **params))
    if as_json:
        emit_json(page)
        return
    table(
        page["items"],
        [
            ("name", "name"),
            ("team", lambda m: m["team"] or "—"),
            ("latest", "latest_version"),
            ("aliases", lambda m: ", ".join(f"{a}→v{v}" for a, v in m["aliases"].items()) or "—"),
        ],
        title=f"{page['total']} models",
    )


@models_app.command("show")
def models_show(name: str, as_json: JsonFlag = False) -> None:
    """A model with its versions."""
    model = _call(lambda: client().get(f"/api/v1/models/{_path(name)}"))
    versions = _call(lambda: client().get(f"/api/v1/models/{_path(name)}/versions"))
    if as_json:
        emit_json({"model": model, "versions": versions["items"]})
        return
    console.print(f"[bold]{model['name']}[/] team={model['team'] or '—'} {model['description']}")
    table(
        versions["items"],
        [
            ("version", "version"),
            ("aliases", lambda v: ", ".join(v["aliases"]) or "—"),
            ("commit", lambda v: v["lineage"].get("git_commit", "—")[:12]),
            ("source", "source"),
        ],
    )


def _pack(path: Path) -> Path:
    if not (path / "MLmodel").is_file():
        fail(f"{path} is not an MLflow model folder (no MLmodel file)", 2)
    archive = Path(tempfile.mkdtemp(prefix="atoll-")) / f"{path.name}.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(path, arcname=path.name)
    return archive


@models_app.command("register")
def models_register(
    name: str,
    model_uri: Annotated[str | None, typer.Option(help="runs:/…, models:/…, s3://…")] = None,
    run_id: Annotated[str | None, typer.Option(help="An MLflow run holding the model")] = None,
    path: Annotated[Path | None, typer.Option(help="A local MLflow model folder to upload")] = None,
    artifact_path: Annotated[str, typer.Option(help="With --run-id: the model's path in the run")] = "model",
    description: str = "",
    tag: Annotated[list[str] | None, typer.Option(help="key=value (repeatable)")] = None,
    team: Annotated[str | None, typer.Option(help="Owning team of a new model")] = None,
    training_data: Annotated[str | None, typer.Option(help="Reference to the training data")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Register a version (the CI hook): reads GitHub Actions / GitLab CI / Jenkins variables into lineage."""
    from atoll.registry.lineage import ci_lineage

    if sum(x is not None for x in (model_uri, run_id, path)) != 1:
        fail("give exactly one of --model-uri, --run-id or --path", 2)
    tags = dict(t.split("=", 1) for t in tag or [] if "=" in t)
    if len(tags) != len(tag or []):
        fail("--tag takes key=value", 2)
    lineage = ci_lineage(os.environ)
    if training_data:
        lineage["training_data"] = training_data
    body: dict[str, Any] = {"description": description, "tags": tags, "team": team, "lineage": lineage}
    if path is not None:
        archive = _pack(path)
        created = _call(
            lambda: client().upload(
                f"/api/v1/models/{_path(name)}/versions/upload", archive, {"metadata": json.dumps(body)}
            )
        )
    else:
        body.update(model_uri=model_uri, run_id=run_id, artifact_path=artifact_path)
        created = _call(lambda: client().post(f"/api/v1/models/{_path(name)}/versions", body))
    if as_json:
        emit_json(created)
    else:
        console.print(f"registered [bold]{name}[/] version {created['version']} from {created['source']}")


@models_app.command("sync")
def models_sync(as_json: JsonFlag = False) -> None:
    """Mirror MLflow into Atoll's cache now (admin)."""
    report = _call(lambda: client().post("/api/v1/registry/sync"))
    emit_json(report) if as_json else console.print(
        f"synced {report['models']} models, {report['versions']} versions in {report['seconds']} s; "
        f"queued builds for {report['builds_queued']} versions"
    )


def promote(
    model: str,
    version: int,
    to: Annotated[str, typer.Option("--to", help="The alias, e.g. production")],
    reason: Annotated[str, typer.Option(help="Why; kept in the history")] = "",
    force: Annotated[bool, typer.Option(help="Admin: move despite failed gates (audited)")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Move an alias to a version behind its gates. Exit 1 when a gate fails."""
    body = {"version": version, "reason": reason, "force": force}
    path = f"/api/v1/models/{_path(model)}/aliases/{_path(to)}/promote"
    result = _call(lambda: client().post(path, body), as_json=as_json)
    if as_json:
        emit_json(result)
        return
    _gate_table(result["gates"])
    moved = f"v{result['from_version']}" if result["from_version"] else "nothing"
    console.print(
        f"[green]{model}@{to}[/] now → v{result['to_version']} (was {moved})"
        + (" [yellow]FORCED[/]" if result["forced"] else "")
    )


def history(
    model: str,
    alias: Annotated[str | None, typer.Option()] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every alias move of a model: from, to, who, why, gates."""
    params = {"alias": alias}
    moves = _call(lambda: client().get(f"/api/v1/models/{_path(model)}/history", **params))
    if as_json:
        emit_json(moves)
        return
    table(
        moves,
        [
            ("when", lambda m: m["at"][:19]),
            ("alias", "alias"),
            ("from", lambda m: m["from_version"] or "—"),
            ("to", "to_version"),
            ("kind", lambda m: m["kind"] + (" (forced)" if m["forced"] else "")),
            ("who", "actor"),
            ("why", "reason"),
        ],
        title=f"{model}: alias history",
    )


def rollback(
    model: str,
    alias: Annotated[str, typer.Option(help="The alias to move back")] = "production",
    reason: str = "",
    force: Annotated[bool, typer.Option(help="Admin: despite failed gates")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Point the alias back at its previous version (gates re-checked)."""
    path = f"/api/v1/models/{_path(model)}/aliases/{_path(alias)}/rollback"
    result = _call(lambda: client().post(path, {"reason": reason, "force": force}), as_json=as_json)
    if as_json:
        emit_json(result)
        return
    _gate_table(result["gates"])
    console.print(
        f"[green]{model}@{alias}[/] rolled back to v{result['to_version']} (was v{result['from_version']})"
    )


def approve(
    model: str,
    version: int,
    alias: Annotated[str, typer.Option(help="The alias this approval is for")] = "production",
    note: str = "",
) -> None:
    """Record your approval of a version for an alias (the second-approver gate)."""
    body = {"kind": "approval", "status": "approved", "summary": {"alias": alias, "note": note}}
    _call(lambda: client().post(f"/api/v1/models/{_path(model)}/versions/{version}/evidence", body))
    console.print(f"approved {model} v{version} for @{alias}")


_STATUS_STYLE = {"succeeded": "[green]succeeded[/]", "failed": "[red]failed[/]"}


def _num(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _p50(build: dict[str, Any], batch: int) -> str:
    found = ((build.get("latency") or {}).get(f"batch_{batch}") or {}).get("p50_ms")
    return "—" if found is None else f"{found:.3f}"


def builds(
    model: str,
    version: int,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Queue new builds (Deployer)")] = False,
    backend: Annotated[
        list[str] | None, typer.Option("--backend", help="Only this backend (repeatable)")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every attempt, not the newest per backend")] = False,
    as_json: JsonFlag = False,
) -> None:
    """The version's builds per backend: status, precision, provider, parity, latency.

    Exit 1 when a shown build failed (so CI can check builds); `--json` has the notes.
    """
    path = f"/api/v1/models/{_path(model)}/versions/{version}/builds"
    if rebuild:
        body = {"backends": backend} if backend else {}
        found = _call(lambda: client().post(path, body), as_json=as_json)
    else:
        found = _call(lambda: client().get(path), as_json=as_json)
        if backend:
            found = [b for b in found if b["backend"] in backend]
        if not every:
            newest: dict[str, dict[str, Any]] = {}
            for build in found:  # newest first
                newest.setdefault(build["backend"], build)
            found = list(newest.values())
    if as_json:
        emit_json(found)
    else:
        table(
            found,
            [
                ("backend", "backend"),
                ("status", lambda b: _STATUS_STYLE.get(b["status"], b["status"])),
                ("build", lambda b: f"#{b['id']} {b['format'] or ''} {b['precision'] or ''}".strip()),
                ("provider", lambda b: (b["provider"] or "—").removesuffix("ExecutionProvider")),
                ("emulated", lambda b: "yes" if b["emulated"] else "no"),
                ("max abs diff", lambda b: _num((b["parity"] or {}).get("max_abs_diff"))),
                ("labels", lambda b: _num((b["parity"] or {}).get("label_agreement"), 5)),
                ("p50 ms b1", lambda b: _p50(b, 1)),
                ("p50 ms b64", lambda b: _p50(b, 64)),
                ("error", lambda b: b["error"] or ""),
            ],
            title=f"{model} v{version}: builds" + (" (queued)" if rebuild else ""),
        )
    if any(b["status"] == "failed" for b in found):
        raise typer.Exit(1)


class _BuildsGroup(TyperGroup):
    """`atoll builds MODEL VERSION` lists builds (the `show` command, kept short since CI
    scripts call it); `atoll builds fetch URI DEST` is the pods' init container."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # Any: typer vendors its own click
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


builds_app = typer.Typer(
    cls=_BuildsGroup,
    help="A version's builds per backend (`atoll builds MODEL VERSION`), and fetching one.",
    no_args_is_help=True,
)
builds_app.command("show")(builds)


@builds_app.command("fetch")
def builds_fetch(
    uri: Annotated[
        str, typer.Argument(help="The build's MLflow artifact URI: runs:/<run>/atoll-builds/<backend>")
    ],
    dest: Annotated[
        Path, typer.Argument(help="Directory to put model.onnx (or mlflow_model/) and build.json in")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Download a build's files from MLflow into DEST (what a pod's init container runs).

    Talks to MLflow (ATOLL_MLFLOW_TRACKING_URI), not to the platform: pods need no token.
    """
    from atoll.cli.processes import _settings
    from atoll.errors import AtollError
    from atoll.registry.builds.manifest import BuildManifest
    from atoll.registry.mlflow.adapter import MlflowRegistry

    settings = _settings()
    if not settings.mlflow_tracking_uri:
        fail("set ATOLL_MLFLOW_TRACKING_URI: the build's files are in MLflow's artifact store", 2)
    try:
        MlflowRegistry(settings.mlflow_tracking_uri).download_build(uri, dest)
        manifest = BuildManifest.load(dest)
    except AtollError as exc:
        fail(exc.detail, EXIT_FOR_STATUS.get(exc.status, 1))
    except (OSError, ValueError) as exc:
        fail(f"{uri} did not give a build directory with a valid build.json: {exc}", 1)
    summary = {
        "uri": uri,
        "dest": str(dest.resolve()),
        "model": manifest.model_name,
        "version": manifest.version,
        "backend": manifest.backend,
        "format": manifest.format,
        "files": sorted(p.name for p in dest.iterdir()),
    }
    if as_json:
        emit_json(summary)
    else:
        what = f"{manifest.model_name} v{manifest.version} ({manifest.backend}, {manifest.format})"
        console.print(f"fetched {what} into {dest}", highlight=False)


@policy_app.command("show")
def policy_show(model: str, alias: str, as_json: JsonFlag = False) -> None:
    """The gates that apply to MODEL@ALIAS (`*` for the default)."""
    found = _call(lambda: client().get(f"/api/v1/models/{_path(model)}/policies/{_path(alias)}"))
    emit_json(found) if as_json else console.print_json(data=found)


@policy_app.command("set")
def policy_set(
    model: str,
    alias: str,
    file: Annotated[
        Path, typer.Option(help="JSON: {protected, gates: {required_role, builds, metrics, ...}}")
    ],
) -> None:
    """Set the gates for MODEL@ALIAS from a JSON file."""
    try:
        body = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        fail(f"{file}: {exc}", 2)
    saved = _call(lambda: client().put(f"/api/v1/models/{_path(model)}/policies/{_path(alias)}", body))
    console.print_json(data=saved)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
    app.add_typer(policy_app, name="policy")
    app.command("promote")(promote)
    app.command()(history)
    app.command()(rollback)
    app.command()(approve)
    app.add_typer(builds_app, name="builds")
