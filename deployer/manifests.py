"""Kubernetes objects of one deployment, as pure functions of (build, backend, settings).

The objects are plain dicts (what `kubectl apply` reads), so they are golden-file tested
and validated offline, and only `deployer/targets/kubernetes.py` talks to a cluster.

How the pod gets the build (docs/deployment.md): an init container of the same Atoll image
runs `atoll builds fetch <mlflow_artifact_uri> /var/lib/atoll/build` into an emptyDir, and
the server container runs `atoll serve /var/lib/atoll/build` from it, read-only. One image
serves every build; the build's files come from MLflow's artifact store, where the build
job logged them.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from atoll.backends import Backend
from atoll.deployer.specs import BuildRef, DeploymentSpec
from atoll.errors import InvalidInput

Manifest = dict[str, Any]

APP_NAME = "atoll-model-server"
COMPONENT = "model-server"
MANAGED_BY = "atoll"
DEPLOYMENT_LABEL = "atoll.dev/deployment"
SERVER_CONTAINER = "server"
BUILD_DIR = "/var/lib/atoll/build"
SCRATCH_DIR = "/tmp"  # noqa: S108 -- an emptyDir of the pod, the only writable path besides the build
RUN_AS = 10001  # the Atoll image's unprivileged user
# Every kind `render` can return, in the order a target applies them (and deletes them).
APPLIED_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_value(text: str) -> str:
    """`text` as a label value: itself when valid, else a readable form plus a hash of it.

    Label values are at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends; model names
    are freer, so the exact name also goes into the `atoll.dev/model-name` annotation.
    """
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:54].strip("-_.")
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{readable}-{digest}" if readable else digest


def selector_labels(spec: DeploymentSpec) -> dict[str, str]:
    """The labels that select a deployment's pods: stable across builds (a selector is immutable)."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": spec.name}


def labels(build: BuildRef, spec: DeploymentSpec) -> dict[str, str]:
    return {
        **selector_labels(spec),
        "app.kubernetes.io/version": str(build.version),
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "atoll.dev/model": label_value(build.model_name),
        "atoll.dev/model-version": str(build.version),
        "atoll.dev/backend": build.backend,
        "atoll.dev/build": str(build.id),
        DEPLOYMENT_LABEL: spec.name,
    }


def ownership_selector(name: str) -> str:
    """The label selector of everything Atoll applied for deployment `name` (and nothing else)."""
    return f"{DEPLOYMENT_LABEL}={name},app.kubernetes.io/managed-by={MANAGED_BY}"


def render(build: BuildRef, backend: Backend, spec: DeploymentSpec) -> list[Manifest]:
    """Every object of the deployment, in apply order (see `APPLIED_KINDS`)."""
    if backend.name != build.backend:
        raise InvalidInput(f"build {build.id} is a {build.backend!r} build, not a {backend.name!r} one")
    objects = [service(build, spec), deployment(build, backend, spec)]
    if spec.autoscaled:
        objects.append(autoscaler(build, spec))
    objects.append(disruption_budget(build, spec))
    return objects


def _metadata(build: BuildRef, spec: DeploymentSpec, **extra: Any) -> dict[str, Any]:
    return {"name": spec.name, "namespace": spec.namespace, "labels": labels(build, spec), **extra}


def _uses_accelerator(build: BuildRef, backend: Backend) -> bool:
    """A pyfunc build runs on the CPU whatever its backend: it gets no device, and no device node."""
    return backend.resource is not None and build.format != "pyfunc"


def _resources(spec: DeploymentSpec, device: str | None) -> dict[str, Any]:
    """CPU and memory from the spec, plus `spec.accelerators` of the extended resource `device`."""
    requests = {k: v for k, v in (("cpu", spec.cpu_request), ("memory", spec.memory_request)) if v}
    limits = {k: v for k, v in (("cpu", spec.cpu_limit), ("memory", spec.memory_limit)) if v}
    if device is not None:
        # Extended resources cannot be overcommitted: request and limit must be equal.
        requests[device] = limits[device] = str(spec.accelerators)
    return {"requests": requests, "limits": limits}


def _env(spec: DeploymentSpec) -> list[dict[str, str]]:
    values = {
        "MLFLOW_TRACKING_URI": spec.mlflow_tracking_uri,  # MLflow's own client
        "ATOLL_MLFLOW_TRACKING_URI": spec.mlflow_tracking_uri,  # Atoll's settings
        "ATOLL_DATA_DIR": f"{SCRATCH_DIR}/atoll",  # the root filesystem is read-only
        "ATOLL_LOG_FORMAT": "json",
        **spec.env,
    }
    return [{"name": key, "value": values[key]} for key in sorted(values)]


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _serve_args(spec: DeploymentSpec) -> list[str]:
    args = ["serve", BUILD_DIR, "--host", "0.0.0.0", "--port", str(spec.port)]  # noqa: S104 -- the pod IP
    args += ["--deployment", spec.name, "--drain-seconds", str(spec.drain_seconds)]
    if spec.endpoint:
        args += ["--endpoint", spec.endpoint]
    return args


def _container(spec: DeploymentSpec, name: str, args: list[str]) -> dict[str, Any]:
    """What both containers share: the Atoll image, its entry point, env and hardening."""
    return {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["atoll"],
        "args": args,
        "env": _env(spec),
        **({"envFrom": [{"secretRef": {"name": spec.env_secret}}]} if spec.env_secret else {}),
        "securityContext": _container_security(),
    }


def _containers(build: BuildRef, backend: Backend, spec: DeploymentSpec) -> dict[str, Any]:
    fetch = {
        **_container(spec, "fetch-build", ["builds", "fetch", build.mlflow_artifact_uri, BUILD_DIR]),
        "resources": _resources(spec, device=None),
        "volumeMounts": [
            {"name": "build", "mountPath": BUILD_DIR},
            {"name": "scratch", "mountPath": SCRATCH_DIR},
        ],
    }
    device = backend.resource if _uses_accelerator(build, backend) else None
    server = {
        **_container(spec, SERVER_CONTAINER, _serve_args(spec)),
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "resources": _resources(spec, device),
        # Loading a large model can take a while: the startup probe holds liveness off until then.
        "startupProbe": _probe("/v2/health/live", period=2, failures=90),
        "livenessProbe": _probe("/v2/health/live", period=10, failures=3),
        "readinessProbe": _probe("/v2/health/ready", period=5, failures=2),
        "volumeMounts": [
            {"name": "build", "mountPath": BUILD_DIR, "readOnly": True},
            {"name": "scratch", "mountPath": SCRATCH_DIR},
        ],
    }
    return {"initContainers": [fetch], "containers": [server]}


def _scheduling(build: BuildRef, backend: Backend) -> dict[str, Any]:
    if not _uses_accelerator(build, backend):
        return {}
    tolerations = [t.model_dump(exclude_none=True) for t in backend.tolerations]
    return {
        **({"nodeSelector": dict(backend.node_selector)} if backend.node_selector else {}),
        **({"tolerations": tolerations} if tolerations else {}),
    }


def _annotations(build: BuildRef) -> dict[str, str]:
    return {
        "atoll.dev/model-name": build.model_name,
        "atoll.dev/build-id": str(build.id),
        "atoll.dev/build-format": build.format,
        "atoll.dev/artifact-uri": build.mlflow_artifact_uri,
    }


def deployment(build: BuildRef, backend: Backend, spec: DeploymentSpec) -> Manifest:
    change_cause = f"atoll: {build.model_name} v{build.version}, build {build.id} ({build.backend})"
    pod_spec = {
        **_containers(build, backend, spec),
        **_scheduling(build, backend),
        "automountServiceAccountToken": False,  # the model server never calls the API
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": spec.drain_seconds + 5,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [
            {"name": "build", "emptyDir": {}},
            {"name": "scratch", "emptyDir": {}},
        ],
    }
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(spec)},
        "progressDeadlineSeconds": spec.progress_deadline_seconds,
        "revisionHistoryLimit": 10,
        # One pod more, never one fewer: a single-replica deployment stays up through a rollout.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": labels(build, spec), "annotations": _annotations(build)},
            "spec": pod_spec,
        },
    }
    if not spec.autoscaled:  # with an HPA, replicas are the autoscaler's field
        deployment_spec = {"replicas": spec.min_replicas, **deployment_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(
            build, spec, annotations={**_annotations(build), "kubernetes.io/change-cause": change_cause}
        ),
        "spec": deployment_spec,
    }


def service(build: BuildRef, spec: DeploymentSpec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(build, spec),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(spec),
            "ports": [{"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def autoscaler(build: BuildRef, spec: DeploymentSpec) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(build, spec),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": spec.target_cpu_utilization},
                    },
                }
            ],
        },
    }


def disruption_budget(build: BuildRef, spec: DeploymentSpec) -> Manifest:
    """At most one pod evicted at a time: `maxUnavailable`, so one replica never blocks a node drain."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(build, spec),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(spec)}},
    }
