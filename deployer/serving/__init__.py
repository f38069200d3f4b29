"""`atoll serve`: the model server for one build (Open Inference Protocol v2 + MLflow scoring).

`app.py` composes it; `run.py` runs it under uvicorn. See `app.py` for the map of modules.
"""
