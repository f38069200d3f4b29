"""The contract between a build (registry) and the model server (deployer).

A build directory holds `model.onnx` (or, for a pyfunc fallback, a copy of the MLflow model
in `mlflow_model/`) and `build.json`, this manifest. The server needs nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_FILE = "build.json"
ONNX_FILE = "model.onnx"
PYFUNC_DIR = "mlflow_model"


class BuildManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str
    version: int
    backend: str
    precision: Literal["fp32", "fp16", "bf16", "int8"]
    format: Literal["onnx", "pyfunc"] = Field(description="pyfunc: CPU-only fallback, no converter exists")
    runtime_provider: str = Field(description="ONNX Runtime provider the backend asks for")
    emulated: bool = Field(default=False, description="True when the device is emulated on the CPU")
    model_uri: str = Field(description="The MLflow model this build came from (models:/name/version)")
    input_name: str | None = Field(default=None, description="The ONNX graph's input tensor")
    input_columns: list[str] | None = Field(default=None, description="Column order, from the signature")
    n_features: int | None = None
    input_dtype: Literal["float32", "float16", "float64", "int64"] = "float32"
    output_names: list[str] = Field(default_factory=list)
    label_output: str | None = Field(default=None, description="Output with predicted labels")
    proba_output: str | None = Field(default=None, description="Output with class probabilities")
    classes: list[int | str] | None = None
    max_batch: int = 32
    max_wait_ms: float = 1.0
    note: str = ""

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / MANIFEST_FILE
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, directory: Path) -> BuildManifest:
        return cls.model_validate_json((directory / MANIFEST_FILE).read_text())
