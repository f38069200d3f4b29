"""Click -> all objects applied, on a real kube-apiserver: Atoll's kubernetes target next to
`kubectl apply --server-side` of the same manifests (kubectl built with the same cache).

The bench starts etcd + kube-apiserver itself (tests/kube/controlplane.py; binaries from
scripts/k8s-build.sh). Each round deploys a new name (four objects: Service, Deployment,
HPA, PDB) and applies it again (the no-op a reconcile does):

- Atoll, warm: one `KubernetesTarget` kept across clicks, as the running platform keeps
  it; the time includes rendering the manifests, the dry run of the whole set and the apply.
- Atoll, cold: a new target per click (kubeconfig, discovery from its on-disk cache), about
  the work a fresh `kubectl` process does (less its process start).
- kubectl: `kubectl apply --server-side -f` of the rendered YAML (discovery cached on disk).

Goal: Atoll <= 1.5x kubectl and <= 1 s. Run: `uv run python bench/bench_deploy_k8s.py`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/kube holds the control-plane starter the tiers use

from atoll.backends import load_catalog  # noqa: E402
from atoll.deployer.manifests import Manifest, render  # noqa: E402
from atoll.deployer.specs import BuildRef, DeploymentSpec  # noqa: E402
from atoll.deployer.targets.kubernetes import KubernetesTarget  # noqa: E402
from tests.kube.controlplane import ControlPlane  # noqa: E402

NAMESPACE = "bench"
BUILD = BuildRef(
    id=1,
    model_name="ranker",
    version=1,
    backend="gpu",
    format="onnx",
    mlflow_artifact_uri="runs:/r/atoll-builds/gpu",
)


def manifests(name: str) -> list[Manifest]:
    spec = DeploymentSpec(
        name=name, namespace=NAMESPACE, image="atoll:bench", mlflow_tracking_uri="http://mlflow:5000"
    )
    return render(BUILD, load_catalog().get("gpu"), spec)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def kubectl_apply(plane: ControlPlane, path: Path) -> None:
    result = subprocess.run(
        [str(plane.bin / "kubectl"), "--kubeconfig", str(plane.kubeconfig), "apply", "--server-side",
         "--field-manager", "kubectl-bench", "-f", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(result.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    times: dict[str, list[float]] = {}

    def record(key: str, seconds: float) -> None:
        times.setdefault(key, []).append(seconds)

    with tempfile.TemporaryDirectory(prefix="atoll-bench-k8s-") as work:
        plane = ControlPlane(work_dir=Path(work)).start()
        try:
            assert plane.kubectl("create", "namespace", NAMESPACE).returncode == 0
            warm = KubernetesTarget(kubeconfig=plane.kubeconfig, namespace=NAMESPACE)
            assert warm.check().reachable
            kubectl_apply(plane, _write(Path(work), "kubectl-warmup", manifests("kubectl-warmup")))
            for index in range(rounds):
                warm_name, cold_name = f"warm-{index}", f"cold-{index}"
                record("atoll warm: create", timed(lambda: _click(warm, warm_name)))  # noqa: B023
                record("atoll warm: no-op", timed(lambda: warm.apply(manifests(warm_name))))  # noqa: B023
                cold = KubernetesTarget(kubeconfig=plane.kubeconfig, namespace=NAMESPACE)
                record("atoll cold: create", timed(lambda: _click(cold, cold_name)))  # noqa: B023
                path = _write(Path(work), f"kubectl-{index}", manifests(f"kubectl-{index}"))
                record("kubectl: create", timed(lambda: kubectl_apply(plane, path)))  # noqa: B023
                record("kubectl: no-op", timed(lambda: kubectl_apply(plane, path)))  # noqa: B023
        finally:
            plane.stop()

    medians = {key: statistics.median(values) * 1000 for key, values in times.items()}
    print(f"{rounds} rounds, 4 objects per deployment, medians in ms")
    for key, value in medians.items():
        print(f"  {key:20s} {value:8.1f}")
    for side, operation in (("atoll warm", "create"), ("atoll cold", "create"), ("atoll warm", "no-op")):
        ratio = medians[f"{side}: {operation}"] / medians[f"kubectl: {operation}"]
        print(f"  ratio {side} / kubectl, {operation}: {ratio:.2f}x (goal <= 1.5x and <= 1000 ms)")


def _click(target: KubernetesTarget, name: str) -> None:
    """What a Deploy click costs once the build is chosen: render, dry-run the set, apply it."""
    result = target.apply(manifests(name))
    assert [o.action for o in result.objects] == ["created"] * 4


def _write(directory: Path, name: str, objects: list[Manifest]) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path


if __name__ == "__main__":
    main()
