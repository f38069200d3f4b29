"""What every runtime hands the server: a loaded model that runs rows, and why it could not load.

A build directory holds `build.json` (the manifest, written by the registry's builds) and
what its runtime loads: `model.onnx` for ONNX Runtime (`onnx_runtime.py`), a copy of the
MLflow model for a pyfunc build (`pyfunc_runtime.py`). `loader.py` picks the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy.typing as npt

from atoll.deployer.serving.contract import Signature, TensorSpec
from atoll.registry.builds.manifest import MANIFEST_FILE, BuildManifest


class ModelLoadError(Exception):
    """The build cannot be served; the message is the reason shown on readiness."""


@dataclass
class LoadedModel:
    """A model ready to run: its signature, outputs, and the provider that runs it."""

    platform: ClassVar[str]  # the OIP metadata's `platform`

    manifest: BuildManifest
    session: Any  # the runtime's own object (onnxruntime.InferenceSession, mlflow.pyfunc.PyFuncModel)
    signature: Signature
    outputs: list[TensorSpec]
    provider: str
    provider_note: str | None
    threads: int

    @property
    def label_output(self) -> str:
        names = [o.name for o in self.outputs]
        if self.manifest.label_output in names:
            return self.manifest.label_output
        return names[0]

    def check_rows(self, rows: npt.NDArray[Any]) -> None:
        """Refuse parsed rows the model cannot take (raises `InputError`); by default all fit."""

    def run(self, rows: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        """The model's outputs for `rows` (one array per output, first axis = rows)."""
        raise NotImplementedError


def load_manifest(build_dir: Path) -> BuildManifest:
    if not (build_dir / MANIFEST_FILE).is_file():
        raise ModelLoadError(f"{build_dir / MANIFEST_FILE} does not exist; is {build_dir} a build directory?")
    try:
        return BuildManifest.load(build_dir)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        first = str(exc).splitlines()
        raise ModelLoadError(f"{MANIFEST_FILE} is invalid: {' '.join(first[:3])}") from None
