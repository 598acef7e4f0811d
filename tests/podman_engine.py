"""A private podman serving the Docker Engine API, for integration tests (written from
``../shared/recipes/podman-docker-api.sh``).

:func:`start_engine` writes podman's configs under a base directory (its own containers.conf,
storage, registries and signature policy, a runc wrapper that keeps runc's state there), imports
an image ``localhost/bb:latest`` from the host's ``busybox`` (no registry), and starts
``podman system service`` on ``<base>/podman.sock``; :meth:`PodmanEngine.stop` stops the
service, :meth:`PodmanEngine.reset` also removes containers, images and storage.
:func:`podman_missing` says why it cannot run here (tests skip with that reason).

Containers created through the API need ``network_mode="none"`` and explicit ``nofile`` and
``nproc`` ulimits (:data:`CONTAINER_KWARGS`): the compat API defaults to a bridge network and
swaps the soft/hard values of podman's default ulimits.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CONTAINER_KWARGS", "IMAGE", "PodmanEngine", "configure", "podman_missing",
           "start_engine"]

IMAGE = "localhost/bb:latest"
PODMAN = "/usr/bin/podman"
CONTAINER_KWARGS: dict[str, Any] = {"network_mode": "none"}
"""Arguments every ``containers.run``/``create`` needs here (plus :func:`ulimits`)."""

READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0


def ulimits() -> list[Any]:
    """The ``nofile`` and ``nproc`` ulimits a container needs on these machines."""
    from docker.types import Ulimit

    return [Ulimit(name="nofile", soft=1024, hard=20000),
            Ulimit(name="nproc", soft=1024, hard=1024)]


def podman_missing() -> str | None:
    """Why a private engine cannot run here, or None."""
    for program in (PODMAN, "/usr/bin/runc"):
        if not os.access(program, os.X_OK):
            return f"{program} is not installed (apt-get install -y podman runc busybox-static)"
    if shutil.which("busybox") is None:
        return "busybox is not installed (apt-get install -y busybox-static)"
    if os.geteuid() != 0:
        return "the private podman engine runs rootful (the tests are not root)"
    return None


def _configs(base: Path) -> dict[str, str]:
    return {
        "etc/containers.conf": f"""[containers]
default_ulimits = ["nofile=1024:20000", "nproc=1024:1024"]
log_driver = "k8s-file"
netns = "none"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{base}/run/events/events.log"
tmp_dir = "{base}/run/libpod"
static_dir = "{base}/storage/libpod"
volume_path = "{base}/storage/volumes"
lock_type = "file"
image_copy_tmp_dir = "{base}/run/tmp"

[engine.runtimes]
runc = ["{base}/bin/runc"]

[network]
network_backend = "cni"
network_config_dir = "{base}/etc/networks"
cni_plugin_dirs = ["{base}/no-cni-plugins"]
""",
        "etc/storage.conf": f"""[storage]
driver = "overlay"
graphroot = "{base}/storage"
runroot = "{base}/run/storage"
""",
        "etc/registries.conf":
            'unqualified-search-registries = []\nshort-name-mode = "permissive"\n',
        "home/.config/containers/policy.json":
            '{ "default": [ { "type": "insecureAcceptAnything" } ] }\n',
        "bin/runc": f'#!/bin/sh\nexec /usr/bin/runc --root {base}/run/runc "$@"\n',
    }


@dataclass
class PodmanEngine:
    """A running private engine: ``url`` is the Docker API's ``unix://`` address."""

    base: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.base / "podman.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def env(self) -> dict[str, str]:
        """The environment of every podman call for this engine."""
        b = self.base
        return {**os.environ,
                "CONTAINERS_CONF": f"{b}/etc/containers.conf",
                "CONTAINERS_STORAGE_CONF": f"{b}/etc/storage.conf",
                "CONTAINERS_REGISTRIES_CONF": f"{b}/etc/registries.conf",
                "HOME": f"{b}/home", "TMPDIR": f"{b}/run/tmp"}

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run the podman CLI on this engine's storage."""
        return subprocess.run([PODMAN, *args], env=self.env(), check=check,
                              capture_output=True, timeout=120)

    def ping(self) -> bool:
        """True if the API answers ``/_ping``."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(self.socket_path))
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
                return b" 200 " in s.recv(256)
        except OSError:
            return False

    def start(self) -> None:
        """Start the API service (configs and image must exist); wait until it answers."""
        log = open(self.base / "run" / "service.log", "ab")  # noqa: SIM115 (the child owns it)
        self.process = subprocess.Popen(
            [PODMAN, "system", "service", "--time=0", self.url], env=self.env(),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.base / "run" / "service.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"podman system service did not come up:\n{tail}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the API service (SIGTERM, SIGKILL after STOP_TIMEOUT_S); containers keep
        running under conmon."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def reset(self) -> None:
        """Stop the service, remove every container and image, unmount and delete the state."""
        self.stop()
        if (self.base / "storage").exists():
            self.podman("rm", "-af", "-t", "0", check=False)
            self.podman("rmi", "-af", check=False)
        prefix = f"{self.base}/"
        with open("/proc/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
        for point in sorted(points, reverse=True):
            if subprocess.run(["umount", point], capture_output=True).returncode:
                subprocess.run(["umount", "-l", point], capture_output=True)
        for name in ("storage", "run", "image"):
            shutil.rmtree(self.base / name, ignore_errors=True)
        self.socket_path.unlink(missing_ok=True)


def _write_configs(base: Path) -> None:
    for rel in ("etc", "run/events", "run/tmp", "run/runc", "home/.config/containers", "image",
                "no-cni-plugins", "bin"):
        (base / rel).mkdir(parents=True, exist_ok=True)
    for rel, content in _configs(base).items():
        (base / rel).write_text(content)
    (base / "bin/runc").chmod(0o755)


def _import_image(engine: PodmanEngine) -> None:
    """``localhost/bb:latest``: a rootfs of the host's static busybox, imported (no registry)."""
    if engine.podman("image", "exists", IMAGE, check=False).returncode == 0:
        return
    root = engine.base / "image" / "rootfs"
    for rel in ("bin", "etc", "tmp", "proc", "sys", "dev"):
        (root / rel).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    busybox = root / "bin" / "busybox"
    shutil.copy(shutil.which("busybox") or "/bin/busybox", busybox)
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, check=True,
                             text=True).stdout.split()
    for applet in applets:
        if applet != "busybox" and not (root / "bin" / applet).exists():
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc/passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    tar = engine.base / "image" / "bb.tar"
    with tarfile.open(tar, "w") as archive:
        archive.add(root, arcname=".")
    engine.podman("import", "-q", "--change", 'CMD ["/bin/sh"]', "--change", "ENV PATH=/bin",
                  str(tar), IMAGE)


def configure(base: Path) -> PodmanEngine:
    """A private engine's configs and storage under ``base`` for podman CLI calls only (no API
    service, no image): ``build``, ``run``, ``import`` through :meth:`PodmanEngine.env`."""
    _write_configs(base)
    return PodmanEngine(base)


def start_engine(base: Path) -> PodmanEngine:
    """Configure a private engine under ``base`` (a short path: the socket's must fit in 108
    bytes), import its image and start its API service."""
    _write_configs(base)
    engine = PodmanEngine(base)
    _import_image(engine)
    engine.start()
    return engine
