"""
Docker Swarm for the tests, on the engine the Compose tests use: a
single-node swarm (initialised here only if the engine is not in one, and
left again only then), and a stack deployed from deploy/swarm/stack.yaml with
images from the loopback registry. Every object made here has a name unique
to the run and is removed by name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from loopback.processes import wait_for
from tests.compose import images
from tests.compose.engine import (
    PROJECT_ROOT,
    ComposeProject,
    EngineUnavailable,
    docker,
)
from tests.support.commands import site_environment

STACK_FILE = PROJECT_ROOT / "deploy" / "swarm" / "stack.yaml"
STACK_STANDINS = Path(__file__).resolve().parent / "stack.standins.yaml"
# The database's node, and an edge node (one nginx task on each).
NODE_LABELS = ("signup.db", "signup.edge")


def stack_files():
    """The stack file, plus the stand-ins override when the stand-ins are
    selected (SIGNUP_TEST_IMAGES); the official postgres image needs none."""
    if images.selected() == images.STANDINS:
        return (STACK_FILE, STACK_STANDINS)
    return (STACK_FILE,)


def site_image_tags(prefix, version):
    return [f"{prefix}/web:{version}", f"{prefix}/nginx:{version}"]


def push_site_images(prefix, version, project_name):
    """Build web and nginx as PREFIX/NAME:VERSION and push them, with
    `docker compose build` and `push` as docs/deployment.md publishes them."""
    env = site_environment(SIGNUP_REGISTRY=prefix, SIGNUP_VERSION=version)
    env.pop("DJANGO_SETTINGS_MODULE")
    project = ComposeProject(
        name=project_name,
        files=images.compose_files(PROJECT_ROOT / "compose.yaml"),
        env=env,
    )
    project("build", "web", "nginx", timeout=1800)
    project("push", "web", "nginx", timeout=600)


class SwarmUnavailable(EngineUnavailable):
    pass


@dataclass
class SingleNodeSwarm:
    """This engine as a swarm manager, labelled as the database's node and
    an edge node."""

    initialised_here: bool = False
    labelled_here: tuple = ()
    node_id: str = ""

    @classmethod
    def join(cls):
        state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
        swarm = cls()
        if state == "inactive":
            result = docker(
                "swarm", "init", "--advertise-addr", "127.0.0.1", check=False
            )
            if result.returncode != 0:
                raise SwarmUnavailable(f"docker swarm init failed: {result.stderr}")
            swarm.initialised_here = True
        elif state != "active":
            raise SwarmUnavailable(f"the engine's swarm state is {state!r}")
        try:
            swarm.node_id = docker(
                "info", "--format", "{{.Swarm.NodeID}}"
            ).stdout.strip()
            labels = json.loads(
                docker(
                    "node",
                    "inspect",
                    swarm.node_id,
                    "--format",
                    "{{json .Spec.Labels}}",
                ).stdout
            )
            missing = tuple(
                label for label in NODE_LABELS if (labels or {}).get(label) != "true"
            )
            if missing:
                adds = [
                    arg for label in missing for arg in ("--label-add", f"{label}=true")
                ]
                docker("node", "update", *adds, swarm.node_id)
                swarm.labelled_here = missing
        except BaseException:
            swarm.leave()
            raise
        return swarm

    def leave(self):
        if self.initialised_here:
            docker("swarm", "leave", "--force", check=False, timeout=60)
        elif self.labelled_here:
            removes = [
                arg for label in self.labelled_here for arg in ("--label-rm", label)
            ]
            docker("node", "update", *removes, self.node_id, check=False)


@dataclass
class Stack:
    """A stack NAME deployed from the project's stack file (plus FILES)."""

    name: str
    env: dict
    files: tuple = (STACK_FILE,)
    volumes_made: set = field(default_factory=set)
    # Variables that choose the engine (DOCKER_HOST) for every command, when
    # it is not the one the tests run beside.
    engine_env: dict = field(default_factory=dict)

    def docker(self, *args, env=None, **options):
        env = {**(os.environ if env is None else env), **self.engine_env}
        return docker(*args, env=env, **options)

    def deploy(self, timeout=300):
        args = ["stack", "deploy", "--detach=true"]
        for path in self.files:
            args += ["--compose-file", str(path)]
        return self.docker(*args, self.name, env=self.env, timeout=timeout)

    def remove(self, timeout=180):
        """`docker stack rm` until its containers and networks are gone. The
        command returns before they are, and a network it tried to remove
        while a task still held it stays behind unless asked again."""
        label = f"label=com.docker.stack.namespace={self.name}"
        left = {}

        def removed():
            left["containers"] = self.docker(
                "ps", "-a", "--filter", label, "--format", "{{.Names}} {{.Status}}"
            ).stdout.splitlines()
            left["networks"] = self.docker(
                "network", "ls", "--filter", label, "--format", "{{.Name}}"
            ).stdout.splitlines()
            if not left["containers"] and not left["networks"]:
                return True
            self.docker("stack", "rm", self.name, check=False, timeout=60)
            return False

        try:
            wait_for(removed, timeout=timeout, interval=2)
        except TimeoutError:
            raise TimeoutError(f"stack {self.name} not removed: left {left}") from None

    def remove_volume(self, short, timeout=60):
        """Remove the stack's volume SHORT (once no container holds it)."""
        volume = f"{self.name}_{short}"

        def gone():
            if self.docker("volume", "inspect", volume, check=False).returncode != 0:
                return True
            return self.docker("volume", "rm", volume, check=False).returncode == 0

        wait_for(gone, timeout=timeout, interval=1, message=f"volume {volume} removed")

    def service(self, short):
        return f"{self.name}_{short}"

    def print_logs(self, *shorts, tail=60):
        """The last TAIL lines of each service's log, for a failed test's
        report (pytest shows what a fixture printed)."""
        for short in shorts:
            logs = self.docker(
                "service", "logs", "--tail", str(tail), self.service(short), check=False
            )
            print(f"--- {short} ---\n{logs.stdout[-6000:]}{logs.stderr[-3000:]}")

    def tasks(self, short, *, desired="running"):
        """Inspected tasks of service SHORT whose desired state is DESIRED."""
        ids = self.docker(
            "service",
            "ps",
            "--quiet",
            "--no-trunc",
            "--filter",
            f"desired-state={desired}",
            self.service(short),
        ).stdout.split()
        if not ids:
            return []
        return json.loads(self.docker("inspect", *ids).stdout)

    def running_tasks(self, short):
        """Tasks that run and passed their healthcheck (Swarm reports a task
        with a healthcheck as running only once it is healthy)."""
        return [
            task for task in self.tasks(short) if task["Status"]["State"] == "running"
        ]

    def container(self, task):
        return task["Status"]["ContainerStatus"]["ContainerID"]

    def task_address(self, task, network_short):
        network = f"{self.name}_{network_short}"
        for attachment in task.get("NetworksAttachments") or []:
            if attachment["Network"]["Spec"]["Name"] == network:
                return attachment["Addresses"][0].split("/")[0]
        raise AssertionError(f"task {task['ID']} has no address on {network}")

    def wait_converged(self, short, replicas, *, image=None, timeout=300):
        """Wait until exactly REPLICAS tasks of SHORT run (healthy), on IMAGE
        if given, and no other task is meant to run; return them."""

        def converged():
            wanted = self.tasks(short)
            running = [t for t in wanted if t["Status"]["State"] == "running"]
            if len(wanted) != replicas or len(running) != replicas:
                return None
            if image and any(
                not t["Spec"]["ContainerSpec"]["Image"].startswith(image + "@")
                for t in running
            ):
                return None
            return running

        return wait_for(
            converged,
            timeout=timeout,
            interval=0.5,
            message=f"{replicas} healthy task(s) of {self.service(short)}",
        )

    def update_status(self, short):
        out = self.docker(
            "service",
            "inspect",
            self.service(short),
            "--format",
            "{{json .UpdateStatus}}",
        ).stdout
        return json.loads(out) or {}

    def service_image(self, short):
        return self.docker(
            "service",
            "inspect",
            self.service(short),
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        ).stdout.strip()

    def scale(self, short, replicas):
        self.docker("service", "scale", "--detach", f"{self.service(short)}={replicas}")

    def update_image(self, short, image):
        self.update(short, "--image", image)

    def update(self, short, *options):
        """`docker service update OPTIONS` of SHORT, without waiting."""
        self.docker(
            "service", "update", "--detach", *options, self.service(short), timeout=120
        )

    def emails_stored(self, emails):
        """Those of EMAILS that the stack's database holds a sign-up for."""
        if not emails:
            return set()
        listed = ",".join(f"'{email}'" for email in emails)
        rows = self.sql(f"SELECT email FROM accounts_signup WHERE email IN ({listed})")
        return set(rows.split())

    def sql(self, query):
        (task,) = self.running_tasks("db")
        result = self.docker(
            "exec",
            self.container(task),
            *("psql", "-U", "signup", "-d", "signup", "-At", "-c", query),
        )
        return result.stdout.strip()
