"""Registry API: models, versions (incl. CI registration and uploads), aliases, evidence,
policies, promotions, history, and the MLflow webhook receiver."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Body, Depends, File, Form, Request, UploadFile, status
from starlette.concurrency import run_in_threadpool

from atoll.errors import Unauthenticated, Unavailable
from atoll.registry import evidence as evidence_service
from atoll.registry import names, promotion, service, sync, uploads, webhooks
from atoll.registry.builds import service as builds
from atoll.registry.builds.schemas import BuildRead, BuildsRequest
from atoll.registry.schemas import (
    AliasMoveRead,
    AliasSet,
    EvidenceIn,
    EvidenceRead,
    ModelSummary,
    PolicyIn,
    PolicyRead,
    PromoteIn,
    PromotionResult,
    RegisterVersion,
    RollbackIn,
    SyncResult,
    TagsUpdate,
    VersionRead,
)
from atoll.schemas import Page
from atoll.web.deps import (
    Admin,
    CatalogDep,
    Deployer,
    OptionalRegistryDep,
    PageDep,
    Promoter,
    Reader,
    Registrar,
    RegistryDep,
    SessionDep,
    SettingsDep,
    require_registry,
)

router = APIRouter(prefix="/api/v1", tags=["registry"])


def valid_model_name(name: str) -> str:
    """Path parameter check that runs before any MLflow call (names MLflow rejects are 422)."""
    return names.check_model_name(name)


ModelName = Annotated[str, Depends(valid_model_name)]


@router.get("/models")
def list_models(
    principal: Reader,
    session: SessionDep,
    page: PageDep,
    q: str | None = None,
    tag: str | None = None,
    team: str | None = None,
    alias: str | None = None,
) -> Page[ModelSummary]:
    """Search the synced cache: `q` name substring, `tag` key or key=value, `team`, `alias`."""
    where = service.ModelFilter(q=q, tag=tag, team=team, alias=alias)
    items, total = service.list_models(session, where=where, limit=page.limit, offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/models/{name}")
def get_model(name: ModelName, principal: Reader, session: SessionDep) -> ModelSummary:
    return service.get_model(session, name)


@router.patch("/models/{name}")
def update_model(
    name: ModelName, body: TagsUpdate, principal: Registrar, session: SessionDep, registry: RegistryDep
) -> ModelSummary:
    service.update_tags(
        session,
        registry,
        actor=principal,
        name=name,
        version=None,
        tags=body.set,
        description=body.description,
    )
    return service.get_model(session, name)


@router.get("/models/{name}/versions")
def list_versions(
    name: ModelName, principal: Reader, session: SessionDep, page: PageDep
) -> Page[VersionRead]:
    items, total = service.list_versions(session, name, limit=page.limit, offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("/models/{name}/versions", status_code=status.HTTP_201_CREATED)
def register_version(
    name: ModelName,
    body: RegisterVersion,
    principal: Registrar,
    session: SessionDep,
    registry: RegistryDep,
    catalog: CatalogDep,
) -> VersionRead:
    """Register a version from a run or a model URI, with CI lineage (the CI hook)."""
    return service.register_version(session, registry, actor=principal, name=name, body=body, catalog=catalog)


@router.post("/models/{name}/versions/upload", status_code=status.HTTP_201_CREATED)
def upload_version(
    name: ModelName,
    principal: Registrar,
    session: SessionDep,
    registry: RegistryDep,
    catalog: CatalogDep,
    file: Annotated[UploadFile, File(description=".zip or .tar.gz of an MLflow model folder")],
    metadata: Annotated[str, Form(description="RegisterVersion fields as JSON, without a source")] = "{}",
) -> VersionRead:
    """Register an uploaded local model. The archive is fully received and checked before
    anything reaches MLflow, so an interrupted upload registers nothing."""
    return uploads.register_upload(
        session,
        registry,
        actor=principal,
        name=name,
        archive=file.file,
        body=uploads.parse_metadata(metadata),
        catalog=catalog,
    )


@router.get("/models/{name}/versions/{version}")
def get_version(name: ModelName, version: int, principal: Reader, session: SessionDep) -> VersionRead:
    return service.get_version(session, name, version)


@router.patch("/models/{name}/versions/{version}")
def update_version(
    name: ModelName,
    version: int,
    body: TagsUpdate,
    principal: Registrar,
    session: SessionDep,
    registry: RegistryDep,
) -> VersionRead:
    service.update_tags(
        session,
        registry,
        actor=principal,
        name=name,
        version=version,
        tags=body.set,
        description=body.description,
    )
    return service.get_version(session, name, version)


@router.put("/models/{name}/aliases/{alias}")
def set_alias(
    name: ModelName,
    alias: str,
    body: AliasSet,
    principal: Deployer,
    session: SessionDep,
    registry: RegistryDep,
) -> PromotionResult:
    """Move an unprotected alias. Protected aliases (production) move only by promotion."""
    return promotion.set_alias(
        session, registry, actor=principal, name=name, alias=alias, version=body.version
    )


@router.get("/models/{name}/versions/{version}/evidence")
def list_evidence(
    name: ModelName, version: int, principal: Reader, session: SessionDep
) -> list[EvidenceRead]:
    service.get_version(session, name, version)
    return [EvidenceRead.model_validate(e) for e in evidence_service.for_version(session, name, version)]


@router.post("/models/{name}/versions/{version}/evidence", status_code=status.HTTP_201_CREATED)
def record_evidence(
    name: ModelName, version: int, body: EvidenceIn, principal: Deployer, session: SessionDep
) -> EvidenceRead:
    row = evidence_service.record(session, actor=principal, name=name, version=version, body=body)
    return EvidenceRead.model_validate(row)


@router.get("/models/{name}/versions/{version}/builds")
def list_builds(name: ModelName, version: int, principal: Reader, session: SessionDep) -> list[BuildRead]:
    """Every build of the version, newest first (one per backend and attempt)."""
    service.get_version(session, name, version)
    return [BuildRead.model_validate(b) for b in builds.list_builds(session, name, version)]


@router.post("/models/{name}/versions/{version}/builds", status_code=status.HTTP_202_ACCEPTED)
def rebuild(
    name: ModelName,
    version: int,
    principal: Deployer,
    session: SessionDep,
    catalog: CatalogDep,
    body: Annotated[BuildsRequest | None, Body()] = None,
) -> list[BuildRead]:
    """Queue new builds (all backends, or `backends`); the worker runs them."""
    service.get_version(session, name, version)
    queued = builds.enqueue_builds(
        session,
        name=name,
        version=version,
        backends=body.backends if body else None,
        actor=principal,
        catalog=catalog,
    )
    return [BuildRead.model_validate(b) for b in queued]


@router.get("/models/{name}/policies/{alias}")
def get_policy(name: ModelName, alias: str, principal: Reader, session: SessionDep) -> PolicyRead:
    return promotion.effective_policy(session, name, alias)


@router.put("/models/{name}/policies/{alias}")
def set_policy(
    name: ModelName, alias: str, body: PolicyIn, principal: Promoter, session: SessionDep
) -> PolicyRead:
    """Set the gates for one alias of one model (`*` as the name: the default for all)."""
    return promotion.set_policy(session, actor=principal, name=name, alias=alias, body=body)


@router.post("/models/{name}/aliases/{alias}/promote")
def promote(
    name: ModelName,
    alias: str,
    body: PromoteIn,
    principal: Deployer,
    session: SessionDep,
    registry: RegistryDep,
) -> PromotionResult:
    """Move the alias to a version if every gate passes (412 with each gate's reason if not)."""
    return promotion.move_alias(
        session,
        registry,
        actor=principal,
        name=name,
        alias=alias,
        version=body.version,
        reason=body.reason,
        force=body.force,
    )


@router.post("/models/{name}/aliases/{alias}/rollback")
def rollback(
    name: ModelName,
    alias: str,
    body: RollbackIn,
    principal: Deployer,
    session: SessionDep,
    registry: RegistryDep,
) -> PromotionResult:
    return promotion.rollback(
        session, registry, actor=principal, name=name, alias=alias, reason=body.reason, force=body.force
    )


@router.get("/models/{name}/history")
def alias_history(
    name: ModelName, principal: Reader, session: SessionDep, alias: str | None = None
) -> list[AliasMoveRead]:
    service.cached_model(session, name)
    return [AliasMoveRead.model_validate(m) for m in promotion.history(session, name, alias)]


@router.post("/registry/sync")
def sync_now(principal: Admin, session: SessionDep, registry: RegistryDep, catalog: CatalogDep) -> SyncResult:
    """Mirror MLflow into the cache now (the worker also does this on a schedule), and
    queue builds for the versions it found first, like the scheduled sync."""
    report = sync.requested_sync(session, registry, actor=principal, catalog=catalog)
    return SyncResult(**report.__dict__)


@router.post("/webhooks/mlflow", tags=["public"], status_code=status.HTTP_204_NO_CONTENT)
async def mlflow_webhook(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    catalog: CatalogDep,
    configured: OptionalRegistryDep,
) -> None:
    """MLflow registry webhook (HMAC-verified): refreshes the model the event names, and
    queues builds for a version created straight in MLflow (Atoll's own registrations
    queue theirs already)."""
    secret = settings.mlflow_webhook_secret
    if secret is None:
        raise Unavailable("webhooks are off: set ATOLL_MLFLOW_WEBHOOK_SECRET to the webhook's secret")
    body = await request.body()
    problem = webhooks.verify(
        secret.get_secret_value(),
        delivery_id=request.headers.get("x-mlflow-delivery-id", ""),
        timestamp=request.headers.get("x-mlflow-timestamp", ""),
        body=body,
        signature=request.headers.get("x-mlflow-signature", ""),
        now=time.time(),
    )
    if problem is not None:
        raise Unauthenticated(f"webhook refused: {problem}")
    event = webhooks.parse_event(body)
    registry = require_registry(configured)
    if event.model_name:
        await run_in_threadpool(sync.apply_webhook_event, session, registry, event, catalog=catalog)
