"""
Which images the Compose tests run, chosen by one environment variable:

- ``SIGNUP_TEST_IMAGES=standins`` (the default): stand-ins built offline from
  Debian packages (``tests/compose/standins``) and selected by the test-only
  override ``compose.standins.yaml``; for machines that reach no registry.
- ``SIGNUP_TEST_IMAGES=official``: the images ``compose.yaml`` and
  ``docker/Dockerfile`` name, pulled from a registry, with no override and no
  debootstrap or stand-in build: the stack exactly as it ships (hosted CI).

``.ci/prepare_images.py`` makes the selected images (``prepare_command()``);
the tests ask only whether they are there (``problems()``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tests.compose import engine

VARIABLE = "SIGNUP_TEST_IMAGES"
STANDINS = "standins"
OFFICIAL = "official"
CHOICES = (STANDINS, OFFICIAL)
# The official images the stand-ins replace, by repository name.
BASE_NAMES = ("postgres", "python", "nginx")

TESTING_PAGE = engine.PROJECT_ROOT / "docs" / "testing.md"
VERSIONS_HEADING = "## Images the Compose tests run"


class UnknownImageSet(ValueError):
    """SIGNUP_TEST_IMAGES names no image set; a typo must not run the wrong one."""


def selected(environ=None):
    """The image set the environment asks for: STANDINS or OFFICIAL."""
    environ = os.environ if environ is None else environ
    value = environ.get(VARIABLE, "").strip().lower() or STANDINS
    if value not in CHOICES:
        raise UnknownImageSet(
            f"{VARIABLE}={environ[VARIABLE]!r} is not one of "
            f"{', '.join(CHOICES)} (unset, it means {STANDINS})"
        )
    return value


def compose_files(*files, selection=None):
    """FILES (the project's compose files), plus the stand-ins override when
    the stand-ins are selected; the official images need no override."""
    selection = selection or selected()
    files = tuple(Path(f) for f in files)
    if selection == STANDINS:
        return (*files, engine.STANDINS_OVERRIDE)
    return files


def _dockerfile_base_images(dockerfile, build_args):
    """The images FROM lines of DOCKERFILE name, ARG defaults (or BUILD_ARGS)
    substituted; stages built from an earlier stage are left out."""
    text = Path(dockerfile).read_text()
    defaults = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.MULTILINE))
    defaults.update(build_args or {})
    stages, bases = set(), []
    for base, stage in re.findall(
        r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.MULTILINE | re.IGNORECASE
    ):
        base = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m[1], m[0]), base)
        if base not in stages:
            bases.append(base)
        if stage:
            stages.add(stage)
    return bases


def official_images(compose_file=None):
    """Every image the stack pulls, in first-use order: what its services run
    (all profiles) and what its builds start FROM, as the project names them."""
    compose_file = Path(compose_file or engine.PROJECT_ROOT / "compose.yaml")
    result = subprocess.run(
        [
            *(str(engine.compose_binary()), "--file", str(compose_file)),
            *("--profile", "*", "config", "--format", "json", "--no-interpolate"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=compose_file.parent,
        check=True,
    )
    services = json.loads(result.stdout)["services"].values()
    # A service may run what another builds (the mailer runs web's image).
    built = {service.get("image") for service in services if service.get("build")}
    images = []
    for service in services:
        build = service.get("build")
        if build:
            dockerfile = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
            images += _dockerfile_base_images(dockerfile, build.get("args"))
        elif service["image"] not in built:
            images.append(service["image"])
    return list(dict.fromkeys(images))


def image_for(name, selection=None):
    """What runs in place of the official image NAME (one of BASE_NAMES): that
    image as the project names it, or its stand-in."""
    if (selection or selected()) == STANDINS:
        return engine.STANDIN_IMAGES[name]
    for image in official_images():
        if image.partition(":")[0] == name:
            return image
    raise LookupError(f"the project names no {name} image")


def needed(selection=None):
    """{image: stand-in it is built from, or None} of every image the engine
    tests run that is not built by a test: the selected base images and the
    test SMTP server."""
    selection = selection or selected()
    if selection == STANDINS:
        wanted = {tag: name for name, tag in engine.STANDIN_IMAGES.items()}
    else:
        wanted = dict.fromkeys(official_images())
    wanted[engine.SMTP_IMAGE] = "smtp"
    return wanted


def problems(selection=None):
    """What is wrong with the images ``needed()``, one line each: absent, or
    built from other files than the stand-in's now."""
    found = []
    for image, standin in needed(selection).items():
        if not engine.image_exists(image):
            found.append(f"{image} is absent")
        elif standin and engine.built_from(image) != engine.context_digest(standin):
            found.append(
                f"{image} was built from other files than "
                f"{engine.STANDINS_DIR.relative_to(engine.PROJECT_ROOT)}/{standin} "
                "holds now"
            )
    return found


def prepare_command(selection=None):
    """The command that makes the images of SELECTION, as a contributor types it."""
    if (selection or selected()) == OFFICIAL:
        return f"{VARIABLE}={OFFICIAL} {engine.PREPARE_IMAGES}"
    return engine.PREPARE_IMAGES


def documented_versions(page=TESTING_PAGE):
    """{image the project names: stand-in version}, from the testing page's
    table under VERSIONS_HEADING (rows like ``| `postgres:18` | PostgreSQL 17 |``)."""
    text = Path(page).read_text()
    if VERSIONS_HEADING not in text:
        raise LookupError(f"{page} has no section {VERSIONS_HEADING!r}")
    section = text.split(VERSIONS_HEADING, 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+?) \|$", section, flags=re.MULTILINE)
    return dict(rows)
