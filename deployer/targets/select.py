"""The platform's deployment targets by kind, made from its settings on first use.

The kubernetes client is imported only when the `kubernetes` target is first asked for, so
a platform that deploys locally never loads it.
"""

from __future__ import annotations

import threading
from typing import Literal, get_args

from atoll.deployer.targets.base import DeploymentTarget, TargetHealth
from atoll.deployer.targets.local import LocalTarget
from atoll.errors import InvalidInput
from atoll.settings import Settings

TargetKind = Literal["local", "kubernetes"]
TARGET_KINDS: tuple[str, ...] = get_args(TargetKind)


class Targets:
    def __init__(self, settings: Settings, **given: DeploymentTarget) -> None:
        """`given` replaces a kind's target (e.g. a KubernetesTarget on a test namespace)."""
        self.settings = settings
        self._made: dict[str, DeploymentTarget] = dict(given)
        self._lock = threading.Lock()

    @property
    def default(self) -> str:
        return self.settings.deploy_target

    def kind(self, wanted: str | None) -> str:
        chosen = wanted or self.default
        if chosen not in TARGET_KINDS:
            raise InvalidInput(f"target: {chosen!r} is not a target (known: {', '.join(TARGET_KINDS)})")
        return chosen

    def get(self, kind: str) -> DeploymentTarget:
        kind = self.kind(kind)
        with self._lock:
            if kind not in self._made:
                self._made[kind] = self._make(kind)
            return self._made[kind]

    def _make(self, kind: str) -> DeploymentTarget:
        if kind == "local":
            return LocalTarget.from_settings(self.settings)
        from atoll.deployer.targets.kubernetes import KubernetesTarget

        return KubernetesTarget.from_settings(self.settings)

    def namespace(self) -> str:
        """The namespace kubernetes deployments go to (asks the target when settings do not say)."""
        if self.settings.kube_namespace:
            return self.settings.kube_namespace
        found = getattr(self.get("kubernetes"), "namespace", None)
        return str(found) if found else "default"

    def health(self) -> dict[str, TargetHealth]:
        return {kind: self.get(kind).check() for kind in TARGET_KINDS}
