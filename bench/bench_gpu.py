"""Benchmark: the `gpu` build's throughput against the `cpu` build at batch 256.

The model: a scikit-learn MLPClassifier (256 features, two hidden layers of 512) — tree
ensembles have no CUDA kernels in ONNX Runtime, so an MLP is what a GPU build is for. Both
builds come from the real build step (`registry/builds/steps.make`: conversion, fp16 for
gpu, parity check against the original) over the model saved with `mlflow.sklearn`, and
are loaded the way `atoll serve` loads them (`deployer/serving/loader.load_model`: the
backend's provider, else its fallback). Throughput = rows/s of back-to-back batch-256
calls, best of 5 one-second rounds, both in this one run.

On a machine without `CUDAExecutionProvider` (no NVIDIA GPU, or the CPU `onnxruntime`
wheel) the gpu build runs on the CPU fallback: the bench says so loudly and its figure is
NOT a GPU figure. On a GPU machine: `uv pip install onnxruntime-gpu==<the onnxruntime
version in uv.lock>` in place of `onnxruntime` (CUDA 12 and cuDNN 9 libraries present),
then `uv run --no-sync python bench/bench_gpu.py`. The card is named from `nvidia-smi`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 256
N_FEATURES = 256
CUDA = "CUDAExecutionProvider"


def card_name() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    found = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip().splitlines()[0] if found.returncode == 0 and found.stdout.strip() else None


def save_model(directory: Path) -> np.ndarray:
    import mlflow.sklearn
    import pandas as pd
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    features = rng.normal(size=(4000, N_FEATURES)).astype(np.float32)
    labels = (features[:, :8].sum(axis=1) > 0).astype(np.int64)
    model = MLPClassifier(hidden_layer_sizes=(512, 512), max_iter=20, random_state=0).fit(features, labels)
    frame = pd.DataFrame(features[:16], columns=[f"f{i}" for i in range(N_FEATURES)])
    mlflow.sklearn.save_model(
        model,
        str(directory),
        input_example=frame,
        serialization_format="pickle",
        pip_requirements=["scikit-learn"],
    )
    return features


def rows_per_second(model: Any, rows: np.ndarray) -> float:
    for _ in range(20):
        model.run(rows)
    best = 0.0
    for _ in range(5):
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < 1.0:
            model.run(rows)
            calls += 1
        best = max(best, calls * len(rows) / (time.perf_counter() - started))
    return best


def main() -> None:
    import onnxruntime as ort

    from atoll.backends import load_catalog
    from atoll.deployer.serving.loader import load_model
    from atoll.registry.builds import steps as build_steps
    from atoll.registry.mlflow.model_files import read_local_model

    has_cuda = CUDA in ort.get_available_providers()
    card = card_name()
    if not has_cuda:
        print("!" * 78)
        print("!! no CUDAExecutionProvider here: the gpu build runs on the CPU fallback.    !!")
        print("!! Its figure below is NOT a GPU figure. Needs an NVIDIA GPU + onnxruntime-gpu !!")
        print("!" * 78)
    print(f"card: {card or 'none (nvidia-smi not found)'}; onnxruntime {ort.__version__}")

    scratch = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    try:
        features = save_model(scratch / "mlflow-model")
        local = read_local_model(scratch / "mlflow-model")
        catalog = load_catalog()
        rows = np.ascontiguousarray(features[:BATCH])
        figures = {}
        for backend in ("cpu", "gpu"):
            out = scratch / backend
            outcome = build_steps.make(local, catalog.get(backend), "bench-mlp", 1, out)
            if outcome.failure is not None:
                raise SystemExit(f"the {backend} build failed: {outcome.failure}")
            outcome.manifest.save(out)
            model = load_model(out, outcome.manifest, backend=catalog.get(backend))
            figures[backend] = rows_per_second(model, rows.astype(model.signature.dtype))
            parity = outcome.parity or {}
            print(
                f"{backend} build: {outcome.precision} on {model.provider}"
                f"{' (fallback: ' + model.provider_note + ')' if model.provider_note else ''};"
                f" parity max diff {parity.get('max_abs_diff', float('nan')):.2e};"
                f" batch {BATCH}: {figures[backend]:,.0f} rows/s"
            )
        ratio = figures["gpu"] / figures["cpu"]
        where = card if has_cuda and card else "the CPU fallback (not a GPU)"
        print(f"gpu build / cpu build throughput at batch {BATCH}: {ratio:.2f}x on {where}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
