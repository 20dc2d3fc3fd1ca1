"""
A real image registry on loopback for the tests: Debian's ``docker-registry``
(Distribution 2.8) as a plain child process, with its own configuration
(listening on 127.0.0.1 only, no auth) and storage in a temporary directory.
The engine treats 127.0.0.0/8 registries as insecure-allowed, so pushing and
pulling need no TLS. ``stop()`` ends it by its pid and removes the storage.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from loopback.processes import free_port
from tests.compose.engine import EngineUnavailable

REGISTRY_BINARY = "docker-registry"
START_TIMEOUT = 20

CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


class RegistryUnavailable(EngineUnavailable):
    pass


class LoopbackRegistry:
    def __init__(self):
        binary = shutil.which(REGISTRY_BINARY)
        if not binary:
            raise RegistryUnavailable(
                "the docker-registry binary is not on PATH "
                "(apt-get install -y docker-registry)"
            )
        self.directory = Path(tempfile.mkdtemp(prefix="signup-registry-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        config = self.directory / "config.yml"
        storage = self.directory / "storage"
        storage.mkdir()
        config.write_text(CONFIG.format(storage=storage, port=self.port))
        self.log_path = self.directory / "registry.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_serving()

    def _wait_until_serving(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log_path.read_text(errors="replace")[-2000:]
                self.stop()
                raise RegistryUnavailable(
                    f"docker-registry exited {self.process.returncode}:\n{log}"
                )
            try:
                if requests.get(f"http://{self.address}/v2/", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RegistryUnavailable(
            f"docker-registry did not answer on {self.address} within {START_TIMEOUT} s"
        )

    def tags(self, repository):
        """The tags the registry holds for REPOSITORY (e.g. signup/web)."""
        response = requests.get(
            f"http://{self.address}/v2/{repository}/tags/list", timeout=5
        )
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return sorted(response.json().get("tags") or [])

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)
