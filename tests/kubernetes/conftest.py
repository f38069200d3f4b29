"""Tier "kubernetes": a real etcd + kube-apiserver (tests/kube), one namespace per test."""

from __future__ import annotations

import pytest

from tests.kube.controlplane import ControlPlane
from tests.kube.fixtures import control_plane, namespace, pytest_runtest_makereport, target

__all__ = ["control_plane", "namespace", "pytest_runtest_makereport", "target"]


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> ControlPlane:
    return control_plane
