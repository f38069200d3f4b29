"""Promotions: move an alias behind gates, with history, audit and one winner at a time.

The alias lives in MLflow, the history and audit rows in our database; they must change
together. The order makes that hold: take a lock row (so a second promotion of the alias
at once gets 409 naming the first), evaluate the gates, write history + audit, move the
alias in MLflow, commit. If MLflow fails the rows roll back; if the commit fails the
alias is moved back. This service therefore commits the caller's session itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from atoll import audit, jobs
from atoll.auth.policy import Principal, Scope
from atoll.db import utcnow
from atoll.errors import AtollError, Conflict, Forbidden
from atoll.registry import evidence as evidence_service
from atoll.registry import names
from atoll.registry.gates import EvidenceFact, GateFacts, evaluate
from atoll.registry.mlflow.adapter import MlflowRegistry
from atoll.registry.models import AliasMove, Build, PromotionLock, PromotionPolicy
from atoll.registry.schemas import GateResult, Gates, PolicyIn, PolicyRead, PromotionResult
from atoll.registry.service import cached_model, check_owner, get_version
from atoll.registry.sync import sync_model

LOCK_TTL = timedelta(minutes=5)
ALIAS_MOVED_JOB = "registry.alias_moved"  # payload: model, alias, from, to, kind; the deployer handles it
DEFAULT_MODEL = "*"
BUILT_IN_POLICIES = {"production": PolicyIn(protected=True, gates=Gates(required_role="approver"))}


class GatesFailed(AtollError):
    status = 412
    title = "Promotion gates failed"


# --- policies ----------------------------------------------------------------------------


def _with_role(gates: Gates, alias: str) -> Gates:
    """Unset `required_role` means the alias's built-in role: adding a metric gate to
    `production` must not quietly drop its approver requirement."""
    built_in = BUILT_IN_POLICIES.get(alias, PolicyIn()).gates.required_role or "engineer"
    return gates.model_copy(update={"required_role": gates.required_role or built_in})


def effective_policy(session: Session, name: str, alias: str) -> PolicyRead:
    """The model's own policy for the alias, else the `*` default, else the built-in one."""
    for model_name, source in ((name, "model"), (DEFAULT_MODEL, "default")):
        row = session.scalar(
            select(PromotionPolicy).where(
                PromotionPolicy.model_name == model_name, PromotionPolicy.alias == alias
            )
        )
        if row is not None:
            gates = _with_role(Gates(**row.gates), alias)
            return PolicyRead(
                model_name=name, alias=alias, source=source, protected=row.protected, gates=gates
            )
    built_in = BUILT_IN_POLICIES.get(alias, PolicyIn())
    return PolicyRead(
        model_name=name,
        alias=alias,
        source="built-in",
        protected=built_in.protected,
        gates=_with_role(built_in.gates, alias),
    )


def set_policy(session: Session, *, actor: Principal, name: str, alias: str, body: PolicyIn) -> PolicyRead:
    names.check_alias(alias)
    if name == DEFAULT_MODEL:
        if not actor.can(Scope.admin):
            raise Forbidden("the default policy for every model needs the admin role")
    else:
        model = cached_model(session, name)
        check_owner(session, actor=actor, team=model.team, name=name)
    row = session.scalar(
        select(PromotionPolicy).where(PromotionPolicy.model_name == name, PromotionPolicy.alias == alias)
    )
    before = None if row is None else {"protected": row.protected, "gates": row.gates}
    if row is None:
        row = PromotionPolicy(model_name=name, alias=alias, updated_by=actor.username)
        session.add(row)
    row.protected = body.protected
    row.gates = body.gates.model_dump()
    row.updated_by = actor.username
    row.updated_at = utcnow()
    audit.record(
        session,
        actor=actor,
        action="policy.set",
        target_type="policy",
        target_id=f"{name}@{alias}",
        summary={"before": before, "after": body.model_dump()},
    )
    session.flush()
    return effective_policy(session, name, alias)


# --- gates ---------------------------------------------------------------------------------


def _builds(session: Session, name: str, version: int) -> dict[str, str]:
    newest: dict[str, str] = {}
    rows = session.scalars(
        select(Build).where(Build.model_name == name, Build.version == version).order_by(Build.id.desc())
    )
    for build in rows:
        newest.setdefault(build.backend, build.status)
    return newest


def check_gates(
    session: Session,
    registry: MlflowRegistry,
    *,
    actor: Principal,
    name: str,
    alias: str,
    version: int,
    pending: Sequence[EvidenceFact] = (),
) -> list[GateResult]:
    """Read the facts from our database, end that transaction, then ask MLflow for metrics.

    Ending the read transaction before the network call matters on SQLite, where every
    transaction holds the write lock: a concurrent promotion must be able to see our lock.
    `pending` is evidence the caller records in the same step as the move (newest first).
    """
    policy = effective_policy(session, name, alias)
    run_id = get_version(session, name, version).run_id
    builds = _builds(session, name, version)
    evidence = [*pending] + [
        EvidenceFact(kind=e.kind, status=e.status, recorded_by=e.recorded_by, summary=e.summary)
        for e in evidence_service.for_version(session, name, version)
    ]
    session.commit()
    facts = GateFacts(
        actor=actor.username,
        actor_role=actor.role,
        alias=alias,
        builds=builds,
        run_metrics=registry.run_metrics(run_id) if policy.gates.metrics and run_id else None,
        evidence=evidence,
    )
    return evaluate(policy.gates, facts)


# --- the move --------------------------------------------------------------------------------


def _acquire(session: Session, *, actor: Principal, name: str, alias: str, version: int) -> None:
    now = utcnow()
    session.execute(
        delete(PromotionLock).where(
            PromotionLock.model_name == name, PromotionLock.alias == alias, PromotionLock.expires_at < now
        )
    )
    session.add(
        PromotionLock(
            model_name=name,
            alias=alias,
            holder=actor.username,
            target_version=version,
            expires_at=now + LOCK_TTL,
        )
    )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        holder = session.get(PromotionLock, (name, alias))
        who = f"{holder.holder} (to v{holder.target_version})" if holder else "another user"
        raise Conflict(
            f"{name}@{alias} is being promoted right now by {who}; try again when it finishes",
            winner=holder.holder if holder else None,
        ) from None


def _release(session: Session, name: str, alias: str) -> None:
    session.rollback()
    session.execute(
        delete(PromotionLock).where(PromotionLock.model_name == name, PromotionLock.alias == alias)
    )
    session.commit()


def move_alias(
    session: Session,
    registry: MlflowRegistry,
    *,
    actor: Principal,
    name: str,
    alias: str,
    version: int,
    reason: str,
    force: bool,
    kind: str = "promote",
    pending: Sequence[EvidenceFact] = (),
    with_move: Callable[[Session], None] | None = None,
) -> PromotionResult:
    """Move the alias behind the gates. `with_move` writes the caller's own rows into the
    move's transaction once the gates pass (an experiment's verdict and traffic), so they
    commit with the alias or not at all; `pending` is the evidence it will record, which the
    gates read as if it were recorded."""
    names.check_alias(alias)
    model = cached_model(session, name)
    check_owner(session, actor=actor, team=model.team, name=name)
    get_version(session, name, version)
    if force and not actor.can(Scope.admin):
        raise Forbidden("--force needs the admin role")
    _acquire(session, actor=actor, name=name, alias=alias, version=version)
    try:
        return _move_locked(
            session,
            registry,
            actor=actor,
            name=name,
            alias=alias,
            version=version,
            reason=reason,
            force=force,
            kind=kind,
            pending=pending,
            with_move=with_move,
        )
    finally:
        _release(session, name, alias)


def _move_locked(
    session: Session,
    registry: MlflowRegistry,
    *,
    actor: Principal,
    name: str,
    alias: str,
    version: int,
    reason: str,
    force: bool,
    kind: str,
    pending: Sequence[EvidenceFact],
    with_move: Callable[[Session], None] | None,
) -> PromotionResult:
    current = registry.get_model(name).aliases.get(alias)
    from_version = int(current) if current else None
    if from_version == version:
        raise Conflict(f"{name}@{alias} already points to version {version}")
    gates = check_gates(
        session, registry, actor=actor, name=name, alias=alias, version=version, pending=pending
    )
    failed = [g for g in gates if not g.passed]
    if failed and not force:
        summary = "; ".join(f"{g.gate}: {g.reason}" for g in failed)
        raise GatesFailed(
            f"{name} v{version} cannot move to @{alias}: {summary}",
            gates=[g.model_dump() for g in gates],
        )
    forced = bool(failed) and force
    session.add(
        AliasMove(
            model_name=name,
            alias=alias,
            from_version=from_version,
            to_version=version,
            kind=kind,
            forced=forced,
            actor=actor.username,
            reason=reason,
            gates=[g.model_dump() for g in gates],
        )
    )
    audit.record(
        session,
        actor=actor,
        action=f"alias.{kind}",
        target_type="model_alias",
        target_id=f"{name}@{alias}",
        summary={"from": from_version, "to": version, "forced": forced, "reason": reason},
    )
    # Deployments that follow the alias roll to the new version: the deployer handles this job
    # (the registry never imports the deployer). In this transaction, so no move goes unannounced.
    jobs.enqueue(
        session,
        kind=ALIAS_MOVED_JOB,
        payload={"model": name, "alias": alias, "from": from_version, "to": version, "kind": kind},
    )
    if with_move is not None:
        with_move(session)
    session.flush()
    registry.set_alias(name, alias, str(version))
    try:
        session.commit()
    except Exception:
        session.rollback()
        _restore(registry, name, alias, from_version)
        raise
    sync_model(session, registry, name)  # the cache; the next full sync would also fix it
    session.commit()
    return PromotionResult(
        model_name=name,
        alias=alias,
        from_version=from_version,
        to_version=version,
        promoted=True,
        forced=forced,
        gates=gates,
    )


def _restore(registry: MlflowRegistry, name: str, alias: str, version: int | None) -> None:
    if version is None:
        registry.delete_alias(name, alias)
    else:
        registry.set_alias(name, alias, str(version))


def set_alias(
    session: Session, registry: MlflowRegistry, *, actor: Principal, name: str, alias: str, version: int
) -> PromotionResult:
    """Move an unprotected alias (staging, canary...). Protected ones go through promote."""
    names.check_alias(alias)
    if effective_policy(session, name, alias).protected:
        raise Forbidden(f"@{alias} is protected: move it with `atoll promote {name} {version} --to {alias}`")
    return move_alias(
        session,
        registry,
        actor=actor,
        name=name,
        alias=alias,
        version=version,
        reason="",
        force=False,
        kind="set",
    )


def rollback(
    session: Session,
    registry: MlflowRegistry,
    *,
    actor: Principal,
    name: str,
    alias: str,
    reason: str,
    force: bool,
) -> PromotionResult:
    """Point the alias back at the version it held before its last move (gates re-checked)."""
    names.check_alias(alias)
    current = registry.get_model(name).aliases.get(alias)
    last = session.scalar(
        select(AliasMove)
        .where(
            AliasMove.model_name == name,
            AliasMove.alias == alias,
            AliasMove.to_version == (int(current) if current else None),
        )
        .order_by(AliasMove.id.desc())
    )
    if last is None or last.from_version is None:
        raise Conflict(f"{name}@{alias} has no earlier version in Atoll's history to roll back to")
    return move_alias(
        session,
        registry,
        actor=actor,
        name=name,
        alias=alias,
        version=last.from_version,
        reason=reason or f"rollback from v{current}",
        force=force,
        kind="rollback",
    )


def history(session: Session, name: str, alias: str | None = None) -> list[AliasMove]:
    query = select(AliasMove).where(AliasMove.model_name == name)
    if alias:
        query = query.where(AliasMove.alias == alias)
    return list(session.scalars(query.order_by(AliasMove.id.desc())))
