"""Which runtime loads a build: the manifest's `format` decides."""

from __future__ import annotations

from pathlib import Path

from atoll.backends import Backend
from atoll.deployer.serving.onnx_runtime import load_onnx_build
from atoll.deployer.serving.pyfunc_runtime import load_pyfunc_build
from atoll.deployer.serving.runtime import LoadedModel
from atoll.registry.builds.manifest import BuildManifest


def load_model(
    build_dir: Path, manifest: BuildManifest, *, backend: Backend | None, threads: int | None = None
) -> LoadedModel:
    """An ONNX build on ONNX Runtime; a pyfunc build (no ONNX converter) on `mlflow.pyfunc`,
    which both runtimes import only when they load a model."""
    if manifest.format == "pyfunc":
        return load_pyfunc_build(build_dir, manifest)
    return load_onnx_build(build_dir, manifest, backend=backend, threads=threads)
