"""Settings: `ATOLL_*` environment variables over an optional `atoll.toml`.

Environment wins over the file. Unknown keys are errors, in both places, so that a typo
(`ATOLL_DATABSE_URL`) stops start-up instead of silently running on defaults.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "ATOLL_"
TEST_ENV_PREFIX = "ATOLL_TEST_"  # read by the test suite only, never by the platform
CONFIG_FILE_ENV = "ATOLL_CONFIG"


class SettingsError(Exception):
    """A setting is unknown or invalid; the message names the key and what is wrong."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    data_dir: Path = Field(default=Path(".atoll"), description="Where SQLite, logs and artifacts live.")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty means SQLite under data_dir.")
    url: str = Field(default="http://127.0.0.1:8000", description="Public base URL of the platform.")
    token: SecretStr | None = Field(default=None, description="API token used by the client and CLI.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    mlflow_tracking_uri: str = Field(default="", description="MLflow server; empty means not configured.")
    mlflow_webhook_secret: SecretStr | None = Field(
        default=None, description="Shared secret of MLflow registry webhooks; unset turns the receiver off."
    )
    embedded_mlflow_port: int = Field(default=5005, ge=1, le=65535, description="Port of `up`'s MLflow.")
    sync_interval_seconds: int = Field(default=60, ge=5, le=86400, description="Full MLflow sync period.")
    backends_file: Path | None = Field(default=None, description="A TOML file extending the backend catalog.")
    admin_password: SecretStr | None = Field(default=None, description="First admin's password for `up`.")
    secret_key: SecretStr | None = Field(
        default=None, description="Signs session cookies; generated if unset."
    )
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    job_lease_seconds: int = Field(default=60, ge=5, le=3600)
    max_request_bytes: int = Field(
        default=16 * 1024**2, ge=1024, le=1024**3, description="Largest request body (uploads: their own)."
    )
    training_data_roots: list[Path] = Field(
        default_factory=list,
        description="Local folders training data may be read from (else only MLflow, object storage).",
    )
    kubeconfig: Path | None = Field(
        default=None, description="kubeconfig of the kubernetes target; unset: in-cluster, else ~/.kube."
    )
    kube_context: str | None = Field(default=None, description="Context in the kubeconfig; unset: current.")
    kube_namespace: str = Field(default="", description="Namespace of deployments; empty: the context's.")
    deploy_target: Literal["local", "kubernetes"] = Field(
        default="local", description="Where `atoll deploy` puts a deployment when it names no target."
    )
    deploy_image: str = Field(
        default="atoll:latest", description="The Atoll image Kubernetes deployments run (`atoll serve`)."
    )
    kube_mlflow_tracking_uri: str = Field(
        default="", description="MLflow as pods reach it (init container); empty: mlflow_tracking_uri."
    )
    router_port: int = Field(default=8001, ge=1, le=65535, description="Port of `atoll router` under `up`.")
    router_url: str = Field(default="", description="Callers' base URL of the router; empty: host + port.")
    router_refresh_seconds: float = Field(
        default=1.0, gt=0, le=60, description="Longest time the router serves a stale endpoint table."
    )
    reconcile_interval_seconds: int = Field(
        default=30, ge=5, le=3600, description="How often the deployer re-applies desired state."
    )
    local_ready_timeout_seconds: int = Field(
        default=120, ge=5, le=3600, description="Longest wait for a local model server to become ready."
    )
    serve_fault_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="TEST FAULT: share of predictions `atoll serve` answers 500 (canary rollback tests).",
    )
    config: Path | None = Field(default=None, description="Path of atoll.toml (read, not a setting).")

    @field_validator("url", "mlflow_tracking_uri", "kube_mlflow_tracking_uri", "router_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _sqlalchemy_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:// or postgresql+psycopg:// URL")
        if value.startswith("postgresql://"):
            return "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'atoll.db'}"

    @property
    def effective_router_url(self) -> str:
        """Where callers reach endpoints: `/endpoints/{name}/...` under this base."""
        return self.router_url or f"http://{self.host}:{self.router_port}"

    @property
    def cookie_secure(self) -> bool:
        return self.url.startswith("https://")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads `atoll.toml` (or `$ATOLL_CONFIG`) from the working directory, if present."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        explicit = os.environ.get(CONFIG_FILE_ENV)
        path = Path(explicit) if explicit else Path("atoll.toml")
        if not path.exists():
            if explicit:
                raise SettingsError(f"{CONFIG_FILE_ENV}: file {path} does not exist")
            return {}
        try:
            return tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path}: not valid TOML ({exc})") from exc


def _unknown_env_keys() -> list[str]:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(
        k
        for k in os.environ
        if k.upper().startswith(ENV_PREFIX)  # pydantic-settings reads env names case-blind
        and not k.upper().startswith(TEST_ENV_PREFIX)
        and k.upper() not in known
    )


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "settings"
    source = f"{ENV_PREFIX}{key.upper()} / atoll.toml `{key}`"
    if first["type"] == "extra_forbidden":
        return f"unknown setting `{key}` in {os.environ.get(CONFIG_FILE_ENV, 'atoll.toml')}"
    return f"invalid setting {source}: {first['msg']}"


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning any problem into one `SettingsError` line."""
    unknown = [k for k in _unknown_env_keys() if k.removeprefix(ENV_PREFIX).lower() not in overrides]
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]} (known: see docs/configuration.md)")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def child_environment(settings: Settings) -> dict[str, str]:
    """The environment of a process the platform starts (a local model server, the router):
    the platform's own, with its database, data directory and log settings, so settings
    given in code (tests, `atoll up` flags) reach the child too."""
    env = dict(os.environ)
    env[f"{ENV_PREFIX}DATABASE_URL"] = settings.effective_database_url
    env[f"{ENV_PREFIX}DATA_DIR"] = str(settings.data_dir.resolve())
    env[f"{ENV_PREFIX}LOG_FORMAT"] = settings.log_format
    env[f"{ENV_PREFIX}LOG_LEVEL"] = settings.log_level
    if settings.backends_file is not None:
        env[f"{ENV_PREFIX}BACKENDS_FILE"] = str(settings.backends_file.resolve())
    return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
