"""
The three-node swarm the multi-host tests run on, as .ci/swarm_nodes.py makes
it on the outer Docker engine: three engine-in-container hosts on one bridge,
all three swarm managers, and an image registry beside them.

Each node's engine is driven from outside through a second socket that its
dockerd opens in a directory the outer host mounts (``Node.docker``), so the
tests use the outer host's docker CLI, as an operator's laptop would.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.compose.engine import PROJECT_ROOT, docker

# What makes them (and what the tests tell a developer to run).
START_NODES = ".venv/bin/python .ci/swarm_nodes.py start"
IMAGE = "signup-ci/swarm-node:test"
IMAGE_CONTEXT = PROJECT_ROOT / ".ci" / "swarm-node"
NETWORK = "signup-nodes"
SUBNET = "172.30.0.0/24"
# The registry runs on the bridge too: the nodes pull from this address
# (insecure-registries in .ci/swarm-node/daemon.json), and the outer engine
# pushes to the loopback port published for it (registry_push_address()).
REGISTRY_CONTAINER = "signup-nodes-registry"
REGISTRY_IN_NODES = "172.30.0.2:5000"
SOCKET_ROOT = Path(os.environ.get("SIGNUP_NODES_SOCKETS", "/run/signup-nodes"))


@dataclass(frozen=True)
class Node:
    name: str
    address: str

    @property
    def container(self):
        return f"signup-{self.name}"

    @property
    def volume(self):
        return f"signup-{self.name}"

    @property
    def socket_dir(self):
        return SOCKET_ROOT / self.name

    def env(self):
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket_dir}/docker.sock"}

    def docker(self, *args, check=True, timeout=120, input=None):
        """``docker ARGS`` against this node's engine."""
        return docker(*args, check=check, timeout=timeout, input=input, env=self.env())

    def answers(self):
        try:
            result = self.docker(
                "info", "--format", "{{.ServerVersion}}", check=False, timeout=10
            )
        except subprocess.TimeoutExpired:  # a hung engine
            return False
        return result.returncode == 0 and bool(result.stdout.strip())


NODES = (
    Node("node1", "172.30.0.11"),
    Node("node2", "172.30.0.12"),
    Node("node3", "172.30.0.13"),
)
# The node that runs `swarm init`, and so leads until it is lost.
FIRST_LEADER = NODES[1]


def by_name(name):
    return next(node for node in NODES if node.name == name)


def registry_push_address():
    """HOST:PORT on loopback where the outer engine pushes to the registry."""
    out = docker("port", REGISTRY_CONTAINER, "5000/tcp").stdout.split()
    loopback = next(line for line in out if line.startswith("127.0.0.1:"))
    return loopback
