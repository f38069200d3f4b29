"""The MLflow adapter: the only package of Atoll that imports `mlflow` (an import-linter
contract holds it to that).

`adapter.py` talks to a tracking server (models, versions, aliases, artifacts);
`model_files.py` reads and loads a model directory on local disk; `embedded.py` runs the
MLflow server that `atoll up` starts for itself.
"""

import os

# Before any submodule imports MLflow: telemetry off, no "View run at" lines, and calls
# that fail fast instead of retrying for minutes.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # server logs, not a terminal
