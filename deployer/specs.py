"""What a deployment is made of, before any Kubernetes object exists: the build and the settings.

Both are checked here, so that a bad name or quantity is a 422 naming the field before any
API call (Kubernetes would refuse it too, but later and in its own words).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from atoll.errors import InvalidInput
from atoll.settings import ENV_PREFIX, Settings

# A Service's name must be an RFC 1035 label (DNS-1123 label that starts with a letter), and
# every object of a deployment is named after it, so that is the rule for deployment names.
_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_LABEL = 63


def check_deployment_name(name: str) -> str:
    """A deployment's name: it names the Deployment, Service, HPA and PDB, and labels them."""
    if len(name) > MAX_LABEL or not _DNS_1035_LABEL.match(name):
        raise ValueError(
            f"{name!r} is not a valid deployment name: use at most {MAX_LABEL} lowercase letters, "
            "digits and '-', starting with a letter and ending with a letter or digit "
            "(a DNS-1123 label that a Kubernetes Service accepts), e.g. 'ranker-v7-gpu'"
        )
    return name


def check_namespace(name: str) -> str:
    if len(name) > MAX_LABEL or not _DNS_1123_LABEL.match(name):
        raise ValueError(
            f"{name!r} is not a valid namespace: use at most {MAX_LABEL} lowercase letters, digits "
            "and '-', starting and ending with a letter or digit (a DNS-1123 label)"
        )
    return name


def _quantity(value: str | None) -> str | None:
    if value is not None and not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. '500m', '2', '512Mi', '4Gi')")
    return value


DeploymentName = Annotated[str, AfterValidator(check_deployment_name)]
Namespace = Annotated[str, AfterValidator(check_namespace)]
Quantity = Annotated[str | None, AfterValidator(_quantity)]


class BuildRef(BaseModel):
    """The build a deployment serves: what the init container fetches and the labels name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=1)
    model_name: str = Field(min_length=1)
    version: int = Field(ge=1)
    backend: str = Field(min_length=1)
    format: Literal["onnx", "pyfunc"]
    mlflow_artifact_uri: str = Field(
        min_length=1, description="runs:/<run>/atoll-builds/<backend>: what the pod fetches"
    )


class DeploymentSpec(BaseModel):
    """Deployment settings an engineer chooses (the rest comes from the build and the backend).

    `min_replicas == max_replicas` is a fixed count (no HorizontalPodAutoscaler); otherwise
    an HPA scales between them on CPU and owns `spec.replicas` (Atoll leaves it out of the
    Deployment it applies, so that re-applying never fights the autoscaler).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: DeploymentName
    namespace: Namespace = "default"
    image: str = Field(min_length=1, description="The Atoll image (it runs `atoll serve`)")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    endpoint: str | None = Field(default=None, description="Endpoint name written to the event log")
    min_replicas: int = Field(default=1, ge=1, le=1000)
    max_replicas: int = Field(default=3, ge=1, le=1000)
    target_cpu_utilization: int = Field(default=70, ge=1, le=100)
    cpu_request: Quantity = "500m"
    cpu_limit: Quantity = "2"
    memory_request: Quantity = "512Mi"
    memory_limit: Quantity = "2Gi"
    accelerators: int = Field(default=1, ge=1, le=64, description="Devices per pod on gpu/asic backends")
    port: int = Field(default=8080, ge=1024, le=65535)
    mlflow_tracking_uri: str = Field(min_length=1, description="Where the init container fetches the build")
    env: dict[str, str] = Field(default_factory=dict)
    env_secret: str | None = Field(
        default=None, description="A Secret whose keys become env variables (ATOLL_DATABASE_URL...)"
    )
    progress_deadline_seconds: int = Field(default=600, ge=10)
    drain_seconds: int = Field(default=30, ge=0, le=3600)

    @property
    def autoscaled(self) -> bool:
        return self.max_replicas > self.min_replicas

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        if not self.mlflow_tracking_uri.startswith(("http://", "https://")):
            raise ValueError("mlflow_tracking_uri: must start with http:// or https://")
        if self.autoscaled and self.cpu_request is None:
            raise ValueError("cpu_request: the autoscaler scales on CPU utilisation and needs a CPU request")
        if self.env_secret is not None and (
            len(self.env_secret) > 253 or not _DNS_1123_SUBDOMAIN.match(self.env_secret)
        ):
            raise ValueError(f"env_secret: {self.env_secret!r} is not a Secret name (a DNS-1123 subdomain)")
        known = {ENV_PREFIX + field.upper() for field in Settings.model_fields}
        for key in self.env:
            if not _ENV_NAME.match(key):
                raise ValueError(f"env: {key!r} is not an environment variable name")
            if key.upper().startswith(ENV_PREFIX) and key.upper() not in known:
                # `atoll serve` refuses unknown ATOLL_* settings at start: the pod would crash-loop.
                raise ValueError(f"env: {key} is not an Atoll setting (see docs/configuration.md)")
        return self


def require_deployment_name(name: str) -> str:
    """`check_deployment_name` for callers outside pydantic: an `InvalidInput` (422)."""
    try:
        return check_deployment_name(name)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="name") from None


def parse_spec(**fields: object) -> DeploymentSpec:
    """A `DeploymentSpec` from user input; a problem is an `InvalidInput` naming the field."""
    try:
        return DeploymentSpec.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "deployment"
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidInput(f"{field}: {message}", field=field) from None
