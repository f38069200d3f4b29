"""`atoll serve`: the model server for one build (Open Inference Protocol v2 + MLflow scoring)."""

from atoll.deployer.server.app import ModelServer, ServerConfig, create_app
from atoll.deployer.server.batching import MicroBatcher

__all__ = ["MicroBatcher", "ModelServer", "ServerConfig", "create_app"]
