"""
Three Docker hosts on this machine for the multi-host tests
(tests/compose/test_swarm_hosts.py): the engine-in-container nodes of
tests/compose/nodes.py on their own bridge, formed into a swarm of three
managers, and a registry container they pull from.

    .venv/bin/python .ci/swarm_nodes.py start   # from nothing: about 10 s
    .venv/bin/python .ci/swarm_nodes.py stop    # nodes, volumes, network gone

``start`` first removes whatever an earlier run left, so every run starts
with empty hosts and a new swarm. It needs a Docker engine that answers
(.ci/start-docker) and root (the nodes' sockets are under /run). .ci/run
starts the nodes before the tests and stops them when it ends.

The nodes are not privileged containers: ``--privileged`` asks for every
capability, which fails where the machine's root lacks one (these VMs lack
CAP_SYS_RESOURCE), so the privileged settings are asked for one by one.
"""

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loopback.processes import wait_for  # noqa: E402 - after the path is set
from tests.compose import engine, nodes  # noqa: E402

NODE_OPTIONS = (
    "--cap-add", "ALL",
    "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "--device-cgroup-rule", "a *:* rwm",
    "--volume", "/sys/fs/cgroup:/sys/fs/cgroup",
)  # fmt: skip
START_TIMEOUT = 60
BUILD_TIMEOUT = 900


class SetupFailed(RuntimeError):
    pass


def docker(*args, timeout=120, check=True):
    try:
        return engine.docker(*args, timeout=timeout, check=check)
    except engine.CommandFailed as exc:
        raise SetupFailed(str(exc)) from None


def stop():
    """Remove the nodes, the registry, their volumes and the network."""
    names = [node.container for node in nodes.NODES] + [nodes.REGISTRY_CONTAINER]
    docker("rm", "--force", "--volumes", *names, check=False, timeout=120)
    volumes = [node.volume for node in nodes.NODES] + [nodes.REGISTRY_CONTAINER]
    docker("volume", "rm", "--force", *volumes, check=False)
    docker("network", "rm", nodes.NETWORK, check=False)
    for node in nodes.NODES:
        (node.socket_dir / "docker.sock").unlink(missing_ok=True)


def start():
    steps = []

    def step(what, function):
        started = time.monotonic()
        result = function()
        steps.append(f"{what}: {time.monotonic() - started:.1f} s")
        return result

    step("clean up an earlier run", stop)
    step(
        f"build {nodes.IMAGE}",
        lambda: docker(
            "build", "--quiet", "--tag", nodes.IMAGE, str(nodes.IMAGE_CONTEXT),
            timeout=BUILD_TIMEOUT,
        ),
    )  # fmt: skip
    step("network and registry", _network_and_registry)
    step("three engines answering", _start_nodes)
    step("swarm of three managers", _form_swarm)
    for line in steps:
        print(line, flush=True)


def _network_and_registry():
    docker("network", "create", "--driver", "bridge", "--subnet", nodes.SUBNET,
           nodes.NETWORK)  # fmt: skip
    docker(
        "run", "--detach", "--name", nodes.REGISTRY_CONTAINER,
        "--network", nodes.NETWORK, "--ip", nodes.REGISTRY_IN_NODES.split(":")[0],
        # Loopback only on this host: the outer engine pushes here.
        "--publish", "127.0.0.1::5000",
        "--volume", f"{nodes.REGISTRY_CONTAINER}:/var/lib/docker-registry",
        "--entrypoint", "docker-registry",
        nodes.IMAGE, "serve", "/etc/docker/registry/config.yml",
    )  # fmt: skip


def _start_nodes():
    for node in nodes.NODES:
        node.socket_dir.mkdir(parents=True, exist_ok=True)
        docker(
            "run", "--detach", "--name", node.container, "--hostname", node.name,
            "--network", nodes.NETWORK, "--ip", node.address,
            *NODE_OPTIONS,
            "--volume", f"{node.volume}:/var/lib/docker",
            "--volume", f"{node.socket_dir}:/run/outer",
            nodes.IMAGE,
        )  # fmt: skip
    for node in nodes.NODES:
        try:
            wait_for(node.answers, timeout=START_TIMEOUT, interval=0.2)
        except TimeoutError:
            log = docker("logs", "--tail", "30", node.container, check=False)
            raise SetupFailed(
                f"{node.container}'s engine did not answer within {START_TIMEOUT} s:"
                f"\n{log.stdout}{log.stderr}"
            ) from None


def _form_swarm():
    leader = nodes.FIRST_LEADER
    leader.docker("swarm", "init", "--advertise-addr", leader.address)
    token = leader.docker("swarm", "join-token", "--quiet", "manager").stdout.strip()
    for node in nodes.NODES:
        if node != leader:
            node.docker("swarm", "join", "--token", token, f"{leader.address}:2377")

    def three_managers():
        listing = leader.docker(
            "node", "ls", "--format", "{{.Status}} {{.ManagerStatus}}"
        ).stdout.split("\n")
        statuses = sorted(line.strip() for line in listing if line.strip())
        return statuses == ["Ready Leader", "Ready Reachable", "Ready Reachable"]

    try:
        wait_for(three_managers, timeout=START_TIMEOUT, interval=0.5)
    except TimeoutError:
        listing = leader.docker("node", "ls", check=False).stdout
        raise SetupFailed(
            f"the swarm did not have three managers:\n{listing}"
        ) from None


def main(argv):
    if len(argv) != 2 or argv[1] not in ("start", "stop"):
        print(f"usage: {Path(argv[0]).name} start|stop", file=sys.stderr)
        return 2
    try:
        engine.require_engine()
        if argv[1] == "start":
            start()
        else:
            stop()
    except (SetupFailed, engine.EngineUnavailable, engine.CommandFailed) as exc:
        print(f"{Path(argv[0]).name} {argv[1]}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
