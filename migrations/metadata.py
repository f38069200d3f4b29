"""Imports every ORM module so `Base.metadata` is complete (for Alembic and tests).

It lives here, not in the core, because it must import every domain package.
"""

from atoll import audit, events, jobs
from atoll.abtest import models as abtest_models
from atoll.auth import models as auth_models
from atoll.db import Base
from atoll.deployer import models as deployer_models
from atoll.monitoring import models as monitoring_models
from atoll.registry import models as registry_models

__all__ = [
    "Base",
    "abtest_models",
    "audit",
    "auth_models",
    "deployer_models",
    "events",
    "jobs",
    "monitoring_models",
    "registry_models",
]
