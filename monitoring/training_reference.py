"""A monitor's reference from a model version's training data in MLflow.

Which version, when the caller names none: the one the endpoint's stable deployment serves
now, i.e. its route with the largest weight (on a tie, the deployment made first: in a 50/50
experiment that is the incumbent). A deployment that follows an alias serves the version the
alias pointed at when it last rolled, which is what the endpoint's traffic is scored by.
Finding and fetching the data is the registry's (`atoll.registry.training_data`); storing
it as the reference is `service`'s, like an upload.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from atoll.deployer import endpoints
from atoll.errors import InvalidInput
from atoll.monitoring.monitor_schemas import TrainingDataVersion
from atoll.registry import training_data
from atoll.registry.training_data import TrainingData, TrainingDataAccess

#: Where the reference's file name column keeps the resolved URI; a longer one is shortened.
MAX_URI_CHARS = 255


def stable_version(session: Session, endpoint_name: str) -> tuple[str, int]:
    """The model and version of the endpoint's stable deployment (largest weight)."""
    endpoint = endpoints.get(session, endpoint_name)
    routes = endpoints.routes(session, endpoint)
    serving = [(route, deployment) for route, deployment in routes if route.weight > 0]
    if not serving and len(routes) == 1:  # one deployment, not available yet: it is the one
        serving = routes
    if not serving:
        attached = ", ".join(d.name for _, d in routes) or "none"
        raise InvalidInput(
            f"reference: endpoint {endpoint_name!r} has no deployment taking traffic (attached: {attached}); "
            "give reference.model and reference.version"
        )
    _, deployment = max(serving, key=lambda pair: (pair[0].weight, -pair[1].id))
    return deployment.model_name, deployment.version


def chosen_version(session: Session, endpoint: str, choice: TrainingDataVersion | None) -> tuple[str, int]:
    """The model and version `choice` names, else the endpoint's stable one."""
    if choice is not None and choice.model is not None and choice.version is not None:
        return choice.model, choice.version
    return stable_version(session, endpoint)


def fetch(
    session: Session,
    access: TrainingDataAccess | None,
    *,
    endpoint: str,
    choice: TrainingDataVersion,
    max_bytes: int,
) -> TrainingData:
    """The training data of the chosen version (default: the endpoint's stable one)."""
    model, version = chosen_version(session, endpoint, choice)
    try:
        return training_data.fetch(
            access or TrainingDataAccess(registry=None),
            model_name=model,
            version=version,
            max_bytes=max_bytes,
        )
    except InvalidInput as exc:
        raise InvalidInput(f"reference: {exc.detail}") from None


def shown_uri(uri: str) -> str:
    """The URI as the reference's file name (a column of 255 characters): the middle elided."""
    if len(uri) <= MAX_URI_CHARS:
        return uri
    keep = (MAX_URI_CHARS - 1) // 2
    return f"{uri[:keep]}…{uri[-keep:]}"
