"""Tier "cluster": apiserver, controller-manager, scheduler and kwok with fake GPU/ASIC nodes."""

from __future__ import annotations

import pytest

from tests.kube.controlplane import ControlPlane
from tests.kube.fixtures import cluster, namespace, pytest_runtest_makereport, target

__all__ = ["cluster", "namespace", "pytest_runtest_makereport", "target"]


@pytest.fixture(scope="session")
def kube(cluster: ControlPlane) -> ControlPlane:
    return cluster
