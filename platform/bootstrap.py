"""First start: the data directory and the first admin."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from atoll.auth import service as auth_service
from atoll.auth.models import User
from atoll.auth.policy import Role
from atoll.auth.secrets import new_password

ADMIN_USERNAME = "admin"
PASSWORD_FILE = "initial-admin-password"  # noqa: S105 - a file name


@dataclass(frozen=True)
class AdminCredentials:
    username: str
    password: str | None  # None when the admin existed before and no file holds a password
    created: bool


def ensure_admin(session: Session, *, data_dir: Path, password: str | None) -> AdminCredentials:
    """Create `admin` if there are no users, keeping a generated password in a 0600 file.

    Like Jenkins' initialAdminPassword: the file lets `make up` print the credentials
    again; delete it once the password is changed.
    """
    password_file = data_dir / PASSWORD_FILE
    if (session.scalar(select(func.count()).select_from(User)) or 0) > 0:
        saved = password_file.read_text().strip() if password_file.exists() else None
        return AdminCredentials(ADMIN_USERNAME, password or saved, created=False)
    chosen = password or new_password()
    auth_service.create_user(session, actor=None, username=ADMIN_USERNAME, password=chosen, role=Role.admin)
    if password is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(chosen + "\n")
    return AdminCredentials(ADMIN_USERNAME, chosen, created=True)
