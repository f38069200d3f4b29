"""Imports every ORM module so `Base.metadata` is complete (for Alembic and tests)."""

from atoll import audit, events, jobs
from atoll.auth import models as auth_models
from atoll.db import Base

__all__ = ["Base", "audit", "auth_models", "events", "jobs"]
