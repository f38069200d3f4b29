"""Per-backend builds: what each backend of the catalog runs for a model version.

`enqueue_builds` adds one `Build` row (queued) and one durable job (`registry.build`) per
backend; the worker runs `run_build` for each. A build:

1. downloads the version's MLflow model and reads its input example and signature;
2. converts scikit-learn models to ONNX fp32 (skl2onnx, `zipmap: False`), then to the
   backend's precision (`convert.py`): fp16 for `gpu`, int8 (`quantize_dynamic`) for
   `asic`, fp32 for `cpu`; a model with no converter gets a **pyfunc build** (format
   "pyfunc", CPU-only, the reason in `note`);
3. runs the ONNX model with the providers the backend's catalog entry picks for this
   machine (`Backend.providers`, the rule the model server follows too): its
   `runtime_provider` where present, else its `local_fallback` (gpu → CPU), else
   **emulated** on the plain ONNX Runtime CPU provider (asic: `emulated: true`); the
   provider that actually ran is recorded;
4. checks parity against the original MLflow model (`parity.py`) on the version's
   input example plus 256 seeded rows drawn around it, against the catalog's thresholds,
   and profiles latency (median ms at batch 1 and batch 64);
5. keeps the build directory (`model.onnx` + `build.json`, the model server's contract)
   under `<data_dir>/builds/<model>/<version>/<backend>/` — `artifact_uri` is that local
   path — and, when the version has an MLflow run, logs it to the run at
   `atoll-builds/<backend>/` (`mlflow_artifact_uri`).

A build outside its parity thresholds is `failed` with the numbers in `error` and
`parity`; its files stay under `<...>/<version>/failed/<backend>-<build id>/` so the
directory a deployment may be serving is replaced only by a build that passed.
See docs/backends.md.

Modules: `service.py` queues and lists builds, `job.py` runs one, `steps.py` makes the
build directory (`convert.py` for ONNX and its precisions, `parity.py` for the numbers),
`manifest.py` is the contract with the model server.
"""
