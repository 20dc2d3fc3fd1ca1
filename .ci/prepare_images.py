"""
The images the Compose tests run, made in the Docker engine that answers
(.ci/start-docker starts one), as SIGNUP_TEST_IMAGES selects
(tests/compose/images.py):

- ``standins`` (the default): debian:trixie-slim made offline with
  debootstrap from the machine's own Debian mirror when it is absent, and the
  stand-ins for the official postgres, nginx and python images built from it
  (tests/compose/standins);
- ``official``: the images compose.yaml and docker/Dockerfile name, pulled,
  with no debootstrap and no stand-in build.

Either way the test SMTP server (tests/compose/standins/smtp) is built from
the Debian base, pulled with the official images. Run once by hand, and again
after changing a stand-in (the tests fail or skip on an image built from other
files), as root when the base image must be made:

    .venv/bin/python .ci/prepare_images.py

.ci/run runs it before the tests.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.compose import engine, images  # noqa: E402 - after the path is set
from tests.compose.engine import BASE_IMAGE, DEBIAN_SUITE  # noqa: E402

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_TIMEOUT = 900
BUILD_TIMEOUT = 900
PULL_TIMEOUT = 900


class SetupFailed(RuntimeError):
    """An image could not be made; the message says which and why."""


def run(command, what, timeout, **options):
    """The CompletedProcess of COMMAND (text, captured); SetupFailed if WHAT,
    the step it is, takes over TIMEOUT seconds."""
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **options,
        )
    except subprocess.TimeoutExpired as exc:
        raise SetupFailed(f"{what} did not finish within {timeout} s") from exc


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
        raise SetupFailed(
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


def debootstrap_base_image(timeout=DEBOOTSTRAP_TIMEOUT):
    """Make BASE_IMAGE offline with debootstrap."""
    debootstrap = shutil.which("debootstrap")
    if not debootstrap:
        raise SetupFailed(
            f"image {BASE_IMAGE} is absent and debootstrap is not installed to "
            "make it offline (apt-get install -y debootstrap; or docker pull "
            f"{BASE_IMAGE} where a registry is reachable)"
        )
    if os.geteuid() != 0:
        raise SetupFailed(
            f"image {BASE_IMAGE} is absent and making it with debootstrap needs "
            f"root (or docker pull {BASE_IMAGE} where a registry is reachable)"
        )
    mirror = debian_mirror()
    rootfs = Path(tempfile.mkdtemp(prefix="signup-debootstrap-", dir="/var/tmp"))
    try:
        result = run(
            [debootstrap, "--variant=minbase", DEBIAN_SUITE, str(rootfs), mirror],
            f"debootstrap {DEBIAN_SUITE} from {mirror}",
            timeout,
        )
        if result.returncode != 0:
            log = rootfs / "debootstrap" / "debootstrap.log"
            detail = log.read_text(errors="replace") if log.exists() else ""
            raise SetupFailed(
                f"debootstrap --variant=minbase {DEBIAN_SUITE} from {mirror} "
                f"exited {result.returncode}:\n"
                f"{engine._tail(result.stdout + result.stderr + detail)}"
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
            imported = run(
                [engine.docker_cli(), "import", "-c", 'CMD ["bash"]', "-", BASE_IMAGE],
                f"docker import of the debootstrapped {DEBIAN_SUITE}",
                timeout,
                stdin=tar.stdout,
            )
        finally:
            tar.stdout.close()
            tar.wait(timeout=60)
        if imported.returncode != 0 or tar.returncode != 0:
            raise SetupFailed(
                f"docker import of the debootstrapped {DEBIAN_SUITE} failed "
                f"(tar {tar.returncode}, import {imported.returncode}):\n"
                f"{engine._tail(imported.stderr)}"
            )
    finally:
        _remove_rootfs(rootfs)


def build(name, tag, timeout=BUILD_TIMEOUT):
    """``docker build`` (legacy builder) of the stand-in NAME as TAG, labelled
    with the digest of its context (engine.standin_context)."""
    digest = engine.context_digest(name)
    with tempfile.TemporaryDirectory(prefix=f"signup-standin-{name}-") as tmp:
        context = Path(tmp)
        for relative, source in engine.standin_context(name):
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, context / relative)
            shutil.copymode(source, context / relative)
        label = f"{engine.CONTEXT_LABEL}={digest}"
        result = run(
            [engine.docker_cli(), "build", "--tag", tag, "--label", label, tmp],
            f"docker build of {tag}",
            timeout,
            env=engine.docker_env(),
        )
    if result.returncode != 0:
        raise SetupFailed(
            f"docker build of {tag} from {engine.STANDINS_DIR / name} exited "
            f"{result.returncode}:\n{engine._tail(result.stdout + result.stderr)}"
        )


def pull(image, timeout=PULL_TIMEOUT):
    """``docker pull IMAGE``; SetupFailed naming the image and the engine's
    reason if it cannot be pulled."""
    result = run(
        [engine.docker_cli(), "pull", image],
        f"{images.VARIABLE}={images.OFFICIAL}: docker pull {image}",
        timeout,
    )
    if result.returncode != 0:
        reason = engine._tail(result.stderr or result.stdout, 5)
        raise SetupFailed(
            f"{images.VARIABLE}={images.OFFICIAL} runs the official images, but "
            f"docker pull {image} failed (no registry reachable?): {reason}"
        )


def steps(selection):
    """(what, function) in the order they run, for the image set SELECTION."""
    if selection == images.OFFICIAL:
        made = [
            (f"pull {image}", lambda i=image: pull(i))
            for image in images.official_images()
        ]
        if not engine.image_exists(BASE_IMAGE):
            made.append((f"pull {BASE_IMAGE}", lambda: pull(BASE_IMAGE)))
    else:
        made = []
        if not engine.image_exists(BASE_IMAGE):
            made.append((f"debootstrap {BASE_IMAGE}", debootstrap_base_image))
        made += [
            (f"build {tag}", lambda n=name, t=tag: build(n, t))
            for name, tag in engine.STANDIN_IMAGES.items()
        ]
    made.append(
        (f"build {engine.SMTP_IMAGE}", lambda: build("smtp", engine.SMTP_IMAGE))
    )
    return made


def main():
    try:
        selection = images.selected()
        engine.require_engine()
        total = time.monotonic()
        for what, step in steps(selection):
            started = time.monotonic()
            step()
            print(f"{what}: {time.monotonic() - started:.1f} s", flush=True)
    except (SetupFailed, images.UnknownImageSet, engine.EngineUnavailable) as exc:
        print(f"{Path(__file__).name}: {exc}", file=sys.stderr)
        return 1
    print(f"images for {images.VARIABLE}={selection}: {time.monotonic() - total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
