"""Portal pages of the model registry: the models list, a model, a version, and the
promotion, approval and rollback buttons.

Thin like the rest of the portal: the same services as `/api/v1/models...`. The mutation
routes go through the CSRF-checked `Writer` and check the scope the API would require.
A refused promotion (failed gates, a conflict, a missing role) answers 200 with a
"not promoted" box in the form's result area, so htmx swaps it in where the person is
looking and every gate's reason is on screen; nothing moved in that case.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from atoll.auth.policy import Principal, Scope
from atoll.errors import AtollError, Forbidden
from atoll.monitoring.service import banner_for_model
from atoll.registry import evidence as evidence_service
from atoll.registry import names, promotion, service
from atoll.registry.builds import service as builds
from atoll.registry.mlflow.adapter import MlflowRegistry
from atoll.registry.schemas import EvidenceIn, GateResult
from atoll.web.deps import (
    MLFLOW_NOT_CONFIGURED,
    CatalogDep,
    OptionalRegistryDep,
    SessionDep,
    require_registry,
)
from atoll.web.portal.render import render
from atoll.web.portal.views import Viewer, Writer

router = APIRouter(include_in_schema=False)
MODELS_PAGE_SIZE = 50
VERSIONS_PAGE_SIZE = 50


def _need(principal: Principal, scope: Scope) -> None:
    reason = principal.missing(scope)
    if reason is not None:
        raise Forbidden(reason)


# --- pages ---------------------------------------------------------------------------------


@router.get("/models", response_class=HTMLResponse)
def models_page(
    request: Request,
    principal: Viewer,
    session: SessionDep,
    registry: OptionalRegistryDep,
    q: str = "",
    team: str = "",
    tag: str = "",
    alias: str = "",
    offset: int = 0,
) -> Response:
    filters = {"q": q.strip(), "team": team.strip(), "tag": tag.strip(), "alias": alias.strip()}
    where = service.ModelFilter(**{k: v or None for k, v in filters.items()})
    offset = max(offset, 0)
    models, total = service.list_models(session, where=where, limit=MODELS_PAGE_SIZE, offset=offset)
    template = "registry/_models_table.html" if request.headers.get("hx-request") else "registry/models.html"
    return render(
        request,
        template,
        principal=principal,
        models=models,
        total=total,
        offset=offset,
        page_size=MODELS_PAGE_SIZE,
        filters=filters,
        filtered=any(filters.values()),
        mlflow_configured=registry is not None,
    )


def _model_context(session: SessionDep, name: str, offset: int = 0) -> dict[str, Any]:
    """Everything the model page shows; the rollback answer re-renders parts of it."""
    model = service.get_model(session, name)
    versions, version_total = service.list_versions(
        session, name, limit=VERSIONS_PAGE_SIZE, offset=max(offset, 0)
    )
    moves = promotion.history(session, name)
    in_use = sorted({*model.aliases, *(m.alias for m in moves), "production"})
    return {
        "model": model,
        "versions": versions,
        "version_total": version_total,
        "offset": max(offset, 0),
        "page_size": VERSIONS_PAGE_SIZE,
        "moves": moves,
        "policies": [promotion.effective_policy(session, name, a) for a in in_use],
    }


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(
    request: Request, name: str, principal: Viewer, session: SessionDep, offset: int = 0
) -> Response:
    names.check_model_name(name)
    return render(
        request,
        "registry/model.html",
        principal=principal,
        can_deploy=principal.can(Scope.deploy),
        banners=banner_for_model(session, name),
        **_model_context(session, name, offset),
    )


def _details(registry: MlflowRegistry | None, name: str, version: int) -> dict[str, Any]:
    """`details` (flavors and signature from the MLmodel file), or `details_note` saying
    why MLflow can't tell."""
    if registry is None:
        return {"details": None, "details_note": f"{MLFLOW_NOT_CONFIGURED}."}
    try:
        return {"details": registry.details(name, str(version)), "details_note": None}
    except AtollError as exc:
        return {"details": None, "details_note": f"Signature and flavors are unavailable: {exc.detail}"}


@router.get("/models/{name}/versions/{version}", response_class=HTMLResponse)
def version_page(
    request: Request,
    name: str,
    version: int,
    principal: Viewer,
    session: SessionDep,
    registry: OptionalRegistryDep,
) -> Response:
    names.check_model_name(name)
    found = service.get_version(session, name, version)
    return render(
        request,
        "registry/version.html",
        principal=principal,
        model=service.get_model(session, name),
        mv=found,  # not `version`: the base template's footer shows Atoll's version
        evidence=evidence_service.for_version(session, name, version),
        builds=builds.list_builds(session, name, version),
        **_details(registry, name, version),
        can_deploy=principal.can(Scope.deploy),
        can_approve=principal.can(Scope.promote),
    )


# --- mutations -----------------------------------------------------------------------------


def _refused(request: Request, principal: Principal, exc: AtollError, what: str) -> Response:
    gates = [GateResult(**g) for g in exc.extra.get("gates", [])]
    return render(
        request, "registry/_refused.html", principal=principal, what=what, detail=exc.detail, gates=gates
    )


@router.post("/models/{name}/versions/{version}/promote", response_class=HTMLResponse)
def promote(
    request: Request,
    name: str,
    version: int,
    principal: Writer,
    session: SessionDep,
    registry: OptionalRegistryDep,
    alias: Annotated[str, Form()] = "production",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        _need(principal, Scope.deploy)
        result = promotion.move_alias(
            session,
            require_registry(registry),
            actor=principal,
            name=name,
            alias=alias.strip(),
            version=version,
            reason=reason.strip(),
            force=False,
        )
    except AtollError as exc:
        return _refused(request, principal, exc, "Not promoted")
    return render(request, "registry/_moved.html", principal=principal, result=result, verb="promoted")


@router.post("/models/{name}/versions/{version}/builds", response_class=HTMLResponse)
def rebuild(
    request: Request, name: str, version: int, principal: Writer, session: SessionDep, catalog: CatalogDep
) -> Response:
    """Queue a new build for every backend; the worker runs them."""
    try:
        _need(principal, Scope.deploy)
        service.get_version(session, name, version)
        builds.enqueue_builds(session, name=name, version=version, actor=principal, catalog=catalog)
    except AtollError as exc:
        return _refused(request, principal, exc, "Not rebuilt")
    session.flush()
    return render(
        request,
        "registry/_builds.html",
        principal=principal,
        model=service.get_model(session, name),
        mv=service.get_version(session, name, version),
        builds=builds.list_builds(session, name, version),
        can_deploy=True,
    )


@router.post("/models/{name}/versions/{version}/approve", response_class=HTMLResponse)
def approve(
    request: Request,
    name: str,
    version: int,
    principal: Writer,
    session: SessionDep,
    alias: Annotated[str, Form()] = "production",
) -> Response:
    alias = names.check_alias(alias.strip())
    _need(principal, Scope.promote)
    body = EvidenceIn(kind="approval", status="approved", summary={"alias": alias}, source="portal")
    evidence_service.record(session, actor=principal, name=name, version=version, body=body)
    return render(
        request,
        "registry/_approved.html",
        principal=principal,
        alias=alias,
        approved_version=version,
        evidence=evidence_service.for_version(session, name, version),
    )


@router.post("/models/{name}/aliases/{alias}/rollback", response_class=HTMLResponse)
def rollback(
    request: Request,
    name: str,
    alias: str,
    principal: Writer,
    session: SessionDep,
    registry: OptionalRegistryDep,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        _need(principal, Scope.deploy)
        result = promotion.rollback(
            session,
            require_registry(registry),
            actor=principal,
            name=name,
            alias=alias,
            reason=reason.strip(),
            force=False,
        )
    except AtollError as exc:
        return _refused(request, principal, exc, "Not rolled back")
    return render(
        request,
        "registry/_moved.html",
        principal=principal,
        result=result,
        verb="rolled back",
        refresh=_model_context(session, name),
        can_deploy=True,
    )
