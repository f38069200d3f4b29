"""A real Kubernetes control plane as local processes, for the `kubernetes` and `cluster` tiers.

Tier "kubernetes": etcd + kube-apiserver. Tier "cluster" adds kube-controller-manager,
kube-scheduler and kwok, which plays the kubelet of fake nodes (annotated
`kwok.x-k8s.io/node=fake`): it marks them Ready and runs the pods the scheduler binds there.
The binaries are built from Go modules by `scripts/k8s-build.sh` (docs/testing.md); each
process logs to a file under `log_dir`, and `log_tails()` gives what to print on a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.kube.certs import ControlPlaneCerts, make_certs

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "k8s-build.sh"
KUBERNETES_TIER = ("etcd", "kube-apiserver", "kubectl")
CLUSTER_TIER = (*KUBERNETES_TIER, "kube-controller-manager", "kube-scheduler", "kwok")
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


class ControlPlaneMissing(RuntimeError):
    """The binaries are not built; the message names the script that builds them."""


def bin_dir(required: tuple[str, ...] = KUBERNETES_TIER) -> Path:
    """`ATOLL_TEST_K8S_BIN`, else the cache directory the build script reports, checked complete.

    (`ATOLL_TEST_`: the platform's settings refuse unknown `ATOLL_*` variables, and an `atoll`
    process a test starts inherits the environment.)
    """
    explicit = os.environ.get("ATOLL_TEST_K8S_BIN")
    if explicit:
        directory = Path(explicit)
    else:
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "--print-bin"], capture_output=True, text=True, check=False
        )
        directory = Path(result.stdout.strip())
    _check_built(directory, required)
    return directory


def _check_built(directory: Path, required: tuple[str, ...]) -> None:
    missing = [name for name in required if not (directory / name).is_file()]
    if missing:
        raise ControlPlaneMissing(
            f"the Kubernetes control plane is not built ({', '.join(missing)} missing in {directory}): "
            f"run `bash scripts/k8s-build.sh` (Go needed; 13-60 minutes the first time) and export "
            f"ATOLL_TEST_K8S_BIN=<the directory it prints>"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    handle: IO[bytes]


@dataclass
class ControlPlane:
    """Start with `start()`, add the cluster parts with `start_cluster()`, end with `stop()`."""

    work_dir: Path
    bin: Path = field(default_factory=bin_dir)
    processes: list[_Process] = field(default_factory=list)
    server: str = ""
    kubeconfig: Path = field(init=False)
    certs: ControlPlaneCerts = field(init=False)

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    def _spawn(self, name: str, args: list[str]) -> _Process:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen(
            [str(self.bin / args[0]), *args[1:]], stdout=handle, stderr=subprocess.STDOUT, cwd=self.work_dir
        )
        process = _Process(name, popen, log, handle)
        self.processes.append(process)
        return process

    def _wait(self, process: _Process, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise RuntimeError(
                    f"{process.name} exited with {process.popen.returncode}:\n{self.tail(process)}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{process.name} was not ready within {timeout:.0f} s:\n{self.tail(process)}")

    def start(self) -> ControlPlane:
        """etcd and kube-apiserver, the apiserver ready, a kubeconfig for its admin."""
        self.certs = make_certs(self.work_dir / "pki")
        client_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client_port}"
        etcd = self._spawn("etcd", [
            "etcd", "--name", "test", "--data-dir", str(self.work_dir / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"test=http://127.0.0.1:{peer_port}", "--unsafe-no-fsync",
            "--log-level", "warn",
        ])  # fmt: skip
        self._wait(etcd, lambda: _http_ok(f"{etcd_url}/health"), timeout=30)
        self.server = f"https://127.0.0.1:{api_port}"
        certs = self.certs
        apiserver = self._spawn("kube-apiserver", [
            "kube-apiserver", "--etcd-servers", etcd_url, "--bind-address", "127.0.0.1",
            "--secure-port", str(api_port), "--cert-dir", str(self.work_dir / "pki"),
            "--tls-cert-file", str(certs.server_cert), "--tls-private-key-file", str(certs.server_key),
            "--client-ca-file", str(certs.ca_cert), "--authorization-mode", "RBAC",
            "--service-cluster-ip-range", "10.0.0.0/24", "--allow-privileged=true",
            "--disable-admission-plugins", "ServiceAccount",
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(certs.service_account_pub),
            "--service-account-signing-key-file", str(certs.service_account_key),
            "--endpoint-reconciler-type", "none", "--v", "1",
        ])  # fmt: skip
        context = ssl.create_default_context(cafile=str(certs.ca_cert))
        context.load_cert_chain(str(certs.admin_cert), str(certs.admin_key))
        self._wait(apiserver, lambda: _http_ok(f"{self.server}/readyz", context), timeout=90)
        self.kubeconfig = self.work_dir / "kubeconfig"
        self.kubeconfig.write_text(self._kubeconfig_text())
        return self

    def _kubeconfig_text(self) -> str:
        return (
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
            f"clusters:\n- name: test\n  cluster:\n    server: {self.server}\n"
            f"    certificate-authority: {self.certs.ca_cert}\n"
            f"users:\n- name: admin\n  user:\n    client-certificate: {self.certs.admin_cert}\n"
            f"    client-key: {self.certs.admin_key}\n"
            "contexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n"
        )

    def start_cluster(self, kwok_stages: Path | None = None) -> ControlPlane:
        """kube-controller-manager, kube-scheduler and kwok, over the started apiserver."""
        _check_built(self.bin, CLUSTER_TIER)
        kubeconfig, certs = str(self.kubeconfig), self.certs
        self._spawn("kube-controller-manager", [
            "kube-controller-manager", "--kubeconfig", kubeconfig, "--leader-elect=false",
            "--secure-port", "0", "--controllers", "*",
            "--service-account-private-key-file", str(certs.service_account_key),
            "--root-ca-file", str(certs.ca_cert), "--cluster-signing-cert-file", str(certs.ca_cert),
            "--cluster-signing-key-file", str(certs.ca_key), "--v", "1",
        ])  # fmt: skip
        self._spawn("kube-scheduler", [
            "kube-scheduler", "--kubeconfig", kubeconfig, "--leader-elect=false", "--secure-port", "0",
        ])  # fmt: skip
        stages = kwok_stages or self.bin.parent / "kwok-stages.yaml"
        if not stages.is_file():
            raise ControlPlaneMissing(f"{stages} is missing: run `bash scripts/k8s-build.sh`")
        self._spawn("kwok", [
            "kwok", "--kubeconfig", kubeconfig, "-c", str(stages), "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector", f"{KWOK_NODE_ANNOTATION}=fake",
            "--cidr", "10.244.0.0/16", "--node-ip", "10.243.0.1",
        ])  # fmt: skip
        time.sleep(0.5)
        for process in self.processes[-3:]:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited at start:\n{self.tail(process)}")
        return self

    def kubectl(self, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input_text, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip

    def tail(self, process: _Process, lines: int = 40) -> str:
        process.handle.flush()
        text = process.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.name} ({p.log})\n{self.tail(p, lines)}" for p in self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                process.popen.terminate()
        for process in reversed(self.processes):
            try:
                process.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(timeout=5)
            process.handle.close()
        self.processes.clear()
        shutil.rmtree(self.work_dir / "etcd", ignore_errors=True)


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310 -- our own server
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
