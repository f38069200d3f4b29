"""The `kubernetes` target: server-side apply through the kubernetes client (its only importer).

Connection: a kubeconfig file and context (`ATOLL_KUBECONFIG`, `ATOLL_KUBE_CONTEXT`), else
the in-cluster service account, else the client's default kubeconfig; the namespace is
`ATOLL_KUBE_NAMESPACE`, else the context's (or the pod's), else `default`. Every write is a
server-side apply with field manager `atoll` and strict field validation, so applying the
same objects twice writes nothing (the resourceVersion stays) and a field someone else set
is a conflict that names them instead of a silent overwrite.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import urllib3
from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from atoll.deployer.manifests import APPLIED_KINDS, DEPLOYMENT_LABEL, SERVER_CONTAINER, ownership_selector
from atoll.deployer.specs import require_deployment_name
from atoll.deployer.targets.base import (
    AppliedObject,
    ApplyResult,
    DeletedObject,
    InvalidManifest,
    Manifest,
    ObjectDiff,
    PodLog,
    RollbackResult,
    RolloutStatus,
    TargetHealth,
    TargetUnavailable,
)
from atoll.deployer.targets.diff import object_diff
from atoll.deployer.targets.fieldset import extract
from atoll.deployer.targets.problems import error_for
from atoll.deployer.targets.rollout import REVISION_ANNOTATION, classify
from atoll.errors import Conflict, NotFound
from atoll.settings import Settings

FIELD_MANAGER = "atoll"
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_STRICT = [("fieldValidation", "Strict")]  # an unknown field is an error, not a dropped line
T = TypeVar("T")


def _revision(obj: dict[str, Any]) -> int:
    """The rollout revision the deployment controller wrote on a Deployment or ReplicaSet."""
    return int(obj["metadata"].get("annotations", {}).get(REVISION_ANNOTATION, 0))


def _kind_name(obj: Manifest) -> str:
    return f"{obj.get('kind', '?')} {obj.get('metadata', {}).get('name', '?')!r}"


class KubernetesTarget:
    """One cluster and namespace. Connects on first use; `check()` says whether it can."""

    def __init__(
        self,
        *,
        kubeconfig: Path | None = None,
        context: str | None = None,
        namespace: str | None = None,
        request_timeout: float = 10.0,
    ) -> None:
        self._kubeconfig = kubeconfig
        self._context = context
        self._namespace = namespace
        self.request_timeout = request_timeout
        self.where = f"context {context!r}" if context else "the Kubernetes API"
        self._dynamic: dynamic.DynamicClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KubernetesTarget:
        return cls(
            kubeconfig=settings.kubeconfig,
            context=settings.kube_context,
            namespace=settings.kube_namespace or None,
        )

    # -- connection -------------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        self._connect()
        assert self._namespace is not None
        return self._namespace

    def _connect(self) -> dynamic.DynamicClient:
        if self._dynamic is not None:
            return self._dynamic
        try:
            if self._kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ:
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
                api_client = client.ApiClient(configuration)
                self.where = f"the in-cluster API ({configuration.host})"
                if self._namespace is None and IN_CLUSTER_NAMESPACE.exists():
                    self._namespace = IN_CLUSTER_NAMESPACE.read_text().strip()
            else:
                file = str(self._kubeconfig) if self._kubeconfig else None
                contexts, active = config.list_kube_config_contexts(config_file=file)
                chosen = (
                    next((c for c in contexts if c["name"] == self._context), None)
                    if self._context
                    else active
                )
                if chosen is None:
                    known = ", ".join(c["name"] for c in contexts)
                    raise ConfigException(f"context {self._context!r} is not in it (contexts: {known})")
                api_client = config.new_client_from_config(config_file=file, context=chosen["name"])
                self.where = f"context {chosen['name']!r} ({api_client.configuration.host})"
                if self._namespace is None:
                    self._namespace = chosen.get("context", {}).get("namespace")
        except (ConfigException, OSError, ValueError) as exc:
            source = f"kubeconfig {self._kubeconfig}" if self._kubeconfig else "the default kubeconfig"
            raise TargetUnavailable(f"cannot load Kubernetes credentials from {source}: {exc}") from None
        self._namespace = self._namespace or "default"
        self._dynamic = self._call(lambda: dynamic.DynamicClient(api_client), "the API discovery")
        return self._dynamic

    def _call(self, request: Callable[[], T], about: str) -> T:
        """Run one API request; turn refusals and network failures into Atoll errors."""
        try:
            return request()
        except ApiException as exc:
            raise error_for(exc.status or 0, exc.body, about, self.where) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise TargetUnavailable(f"cannot reach {self.where}: {reason}") from None

    def _resource(self, api_version: str, kind: str) -> Any:
        api = self._connect()
        try:
            return self._call(lambda: api.resources.get(api_version=api_version, kind=kind), kind)
        except ResourceNotFoundError:
            raise InvalidManifest(f"{self.where} does not serve {kind} in {api_version}") from None

    def _get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        resource = self._resource(api_version, kind)
        try:
            found = self._call(
                lambda: resource.get(
                    name=name, namespace=self.namespace, _request_timeout=self.request_timeout
                ),
                f"{kind} {name!r}",
            )
        except NotFound:
            return None
        return dict(found.to_dict())

    def _list(self, api_version: str, kind: str, selector: str) -> list[dict[str, Any]]:
        resource = self._resource(api_version, kind)
        found = self._call(
            lambda: resource.get(
                namespace=self.namespace, label_selector=selector, _request_timeout=self.request_timeout
            ),
            f"{kind} list",
        )
        return [dict(item) for item in found.to_dict()["items"]]

    def check(self) -> TargetHealth:
        try:
            api = self._connect()
            version = client.VersionApi(api.client)
            self._call(lambda: version.get_code(_request_timeout=min(self.request_timeout, 5)), "/version")
            self._list("apps/v1", "Deployment", ownership_selector("health-check"))
        except (TargetUnavailable, NotFound) as exc:
            return TargetHealth(reachable=False, reason=exc.detail)
        return TargetHealth(reachable=True)

    # -- apply ------------------------------------------------------------------------------

    def _with_namespace(self, obj: Manifest) -> Manifest:
        resource = self._resource(obj["apiVersion"], obj["kind"])
        if not resource.namespaced or obj.get("metadata", {}).get("namespace"):
            return obj
        return {**obj, "metadata": {**obj.get("metadata", {}), "namespace": self.namespace}}

    def _apply_one(self, obj: Manifest, *, dry_run: bool, force: bool) -> tuple[int, dict[str, Any]]:
        resource = self._resource(obj["apiVersion"], obj["kind"])
        response = self._call(
            lambda: resource.server_side_apply(
                body=obj,
                field_manager=FIELD_MANAGER,
                force_conflicts=force,
                dry_run="All" if dry_run else None,
                query_params=list(_STRICT),
                serialize=False,
                _request_timeout=self.request_timeout,
            ),
            _kind_name(obj),
        )
        return response.status, json.loads(response.data)

    def preview(self, objects: list[Manifest]) -> list[ObjectDiff]:
        diffs = []
        for obj in map(self._with_namespace, objects):
            live = self._get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
            _, would_be = self._apply_one(obj, dry_run=True, force=False)
            diffs.append(object_diff(live, would_be))
        return diffs

    def apply(self, objects: list[Manifest], *, force_conflicts: bool = False) -> ApplyResult:
        """Dry-run every object, then apply them in order.

        The dry run first means a refusal (an invalid field, a conflict, a missing namespace)
        leaves nothing half-applied. It also says what the apply does without a read: 201 is
        a create, and an existing object's dry run carries its live resourceVersion, which the
        apply keeps exactly when nothing changed.
        """
        prepared = [self._with_namespace(obj) for obj in objects]
        rehearsed = [self._apply_one(obj, dry_run=True, force=force_conflicts) for obj in prepared]
        applied = []
        for obj, (rehearsal_status, rehearsal) in zip(prepared, rehearsed, strict=True):
            http_status, result = self._apply_one(obj, dry_run=False, force=force_conflicts)
            version = result["metadata"]["resourceVersion"]
            action: Literal["created", "changed", "unchanged"]
            if http_status == 201 or rehearsal_status == 201:
                action = "created"
            elif rehearsal["metadata"].get("resourceVersion") == version:
                action = "unchanged"
            else:
                action = "changed"
            applied.append(AppliedObject(obj["kind"], obj["metadata"]["name"], action, version))
        return ApplyResult(applied)

    # -- rollout ----------------------------------------------------------------------------

    def _deployment(self, name: str) -> dict[str, Any]:
        require_deployment_name(name)
        found = self._get("apps/v1", "Deployment", name)
        if found is None:
            raise NotFound(f"deployment {name!r} is not on {self.where} (namespace {self.namespace!r})")
        return found

    def _replica_sets(self, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        """The ReplicaSets the Deployment owns, oldest revision first."""
        selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
        uid = deployment["metadata"]["uid"]
        owned = [
            rs
            for rs in self._list("apps/v1", "ReplicaSet", selector)
            if any(ref.get("uid") == uid for ref in rs["metadata"].get("ownerReferences") or [])
        ]
        return sorted(owned, key=_revision)

    def status(self, name: str) -> RolloutStatus:
        deployment = self._deployment(name)
        selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
        replica_sets = self._replica_sets(deployment)
        revision = deployment["metadata"].get("annotations", {}).get(REVISION_ANNOTATION)
        current = next((rs for rs in replica_sets if str(_revision(rs)) == revision), None)
        pods = self._list("v1", "Pod", selector)
        involved = {name} | {o["metadata"]["name"] for o in (*replica_sets, *pods)}
        events = self._list("v1", "Event", "")
        events = [e for e in events if e.get("involvedObject", {}).get("name") in involved]
        current_hash = current["metadata"].get("labels", {}).get("pod-template-hash") if current else None
        return classify(deployment, pods, events, current_hash)

    def rollback(self, name: str) -> RollbackResult:
        """Like `kubectl rollout undo`: the previous ReplicaSet's pod template, applied by Atoll."""
        deployment = self._deployment(name)
        if FIELD_MANAGER not in {m.get("manager") for m in deployment["metadata"].get("managedFields") or []}:
            raise Conflict(f"deployment {name!r} was not applied by Atoll; roll it back where it was made")
        current = _revision(deployment)
        earlier = [rs for rs in self._replica_sets(deployment) if _revision(rs) < current]
        if not earlier:
            raise Conflict(f"deployment {name!r} has no revision before {current} to roll back to")
        previous = earlier[-1]
        template = copy.deepcopy(previous["spec"]["template"])
        template["metadata"].get("labels", {}).pop("pod-template-hash", None)
        intent = extract(deployment, FIELD_MANAGER)
        intent["spec"] = {**intent.get("spec", {}), "template": template}
        metadata = intent["metadata"]
        # The Deployment's own labels and annotations name the build it runs: take the template's.
        metadata["labels"] = {**metadata.get("labels", {}), **template["metadata"].get("labels", {})}
        previous_annotations = previous["metadata"].get("annotations", {})
        metadata["annotations"] = {
            **metadata.get("annotations", {}),
            **template["metadata"].get("annotations", {}),
            **{k: v for k, v in previous_annotations.items() if k == "kubernetes.io/change-cause"},
        }
        _, result = self._apply_one(intent, dry_run=False, force=False)
        return RollbackResult(
            name=name,
            from_revision=current,
            to_revision=_revision(previous),
            resource_version=result["metadata"]["resourceVersion"],
        )

    # -- delete and logs --------------------------------------------------------------------

    def _delete_one(self, api_version: str, kind: str, name: str) -> bool:
        resource = self._resource(api_version, kind)
        try:
            self._call(
                lambda: resource.delete(
                    name=name,
                    namespace=self.namespace,
                    propagation_policy="Background",  # its ReplicaSets and pods go too
                    _request_timeout=self.request_timeout,
                ),
                f"{kind} {name!r}",
            )
        except NotFound:
            return False  # gone meanwhile: what we wanted
        return True

    def delete(self, name: str) -> list[DeletedObject]:
        require_deployment_name(name)
        deleted = []
        for api_version, kind in reversed(APPLIED_KINDS):
            for obj in self._list(api_version, kind, ownership_selector(name)):
                if self._delete_one(api_version, kind, obj["metadata"]["name"]):
                    deleted.append(DeletedObject(kind, obj["metadata"]["name"]))
        return deleted

    def _pod_log(self, core: client.CoreV1Api, pod: str, tail: int) -> PodLog:
        try:
            text = self._call(
                lambda: core.read_namespaced_pod_log(
                    pod,
                    self.namespace,
                    container=SERVER_CONTAINER,
                    tail_lines=tail,
                    _request_timeout=self.request_timeout,
                ),
                f"the log of pod {pod!r}",
            )
        except (TargetUnavailable, NotFound, InvalidManifest, Conflict) as exc:
            return PodLog(pod, "", error=exc.detail)
        return PodLog(pod, str(text))

    def logs(self, name: str, tail: int = 200) -> list[PodLog]:
        require_deployment_name(name)
        core = client.CoreV1Api(self._connect().client)
        pods = self._list("v1", "Pod", f"{DEPLOYMENT_LABEL}={name}")
        return [self._pod_log(core, pod["metadata"]["name"], tail) for pod in pods]
