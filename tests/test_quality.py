"""
What the project holds to that no linter checks: Django's system checks,
migrations that agree with the models, the Compose files against the Compose
Specification, what compose.yaml resolves to, and CI's rules. The linters run
through pre-commit (.pre-commit-config.yaml), which .ci/run runs.
"""

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.support.ci import unavailable
from tests.support.commands import (
    PROJECT_ROOT,
    TEST_SECRET_KEY,
    manage,
    site_environment,
)

ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(sys.executable).parent


def tool(name):
    path = TOOLS / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    assert found, f"{name} is not installed: install the test dependency group"
    return found


def run(*command):
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def project_files():
    """What a clone holds: tracked files and new ones that are not ignored."""
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    return [name for name in listed.stdout.split("\0") if name]


def test_django_system_checks_are_clean():
    result = manage(
        "check",
        "--fail-level",
        "WARNING",
        env=site_environment(DJANGO_SECRET_KEY=TEST_SECRET_KEY, POSTGRES_PASSWORD="x"),
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_models_and_migrations_agree():
    result = manage(
        "makemigrations",
        "--check",
        "--dry-run",
        env=site_environment(
            DJANGO_SECRET_KEY=TEST_SECRET_KEY,
            POSTGRES_HOST="127.0.0.1",
            POSTGRES_PASSWORD="",
            POSTGRES_USER="postgres",
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout


def compose_files():
    return [
        name
        for name in project_files()
        if Path(name).name.startswith("compose") and name.endswith((".yaml", ".yml"))
    ]


# Compose's merge tags say how a file is merged over another; the schema
# describes the value under them, and a plain YAML loader refuses the tags.
COMPOSE_MERGE_TAG = re.compile(r"(?<=:)[ \t]+!(?:override|reset)(?=\s)")


def test_compose_files_follow_the_compose_specification(tmp_path):
    files = compose_files()
    assert "compose.yaml" in files
    assert "tests/compose/compose.standins.yaml" in files
    copies = []
    for name in files:
        copy = tmp_path / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(COMPOSE_MERGE_TAG.sub("", (ROOT / name).read_text()))
        copies.append(str(copy))
    result = run(
        tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *copies
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_resolves_to_its_services_with_one_published_port(tmp_path):
    from tests.compose.engine import compose_binary

    # Interpolated as on a fresh clone: no .env, no site variables.
    environment = site_environment()
    result = subprocess.run(
        [str(compose_binary()), "--file", "compose.yaml", "config", "--format", "json"],
        cwd=ROOT,
        env={**environment, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert "version" not in (ROOT / "compose.yaml").read_text().split("services:")[0]
    # Four long-running services and the one-shot that hands out secrets.
    assert sorted(services) == ["db", "mailer", "nginx", "secrets", "web"]
    assert {name for name, service in services.items() if service.get("ports")} == {
        "nginx"
    }
    assert services["nginx"]["ports"][0]["published"] == "8080"
    assert services["db"]["networks"].keys() == {"backend"}
    assert services["nginx"]["networks"].keys() == {"frontend"}
    assert services["mailer"]["networks"].keys() == {"backend", "outbound"}
    assert config["networks"]["backend"]["internal"] is True
    assert not config["networks"]["outbound"].get("internal")
    assert services["web"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["nginx"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert services["mailer"]["depends_on"]["web"]["condition"] == "service_healthy"


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE"])
def test_a_missing_component_fails_in_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)

    with pytest.raises(pytest.fail.Exception, match="nginx is missing"):
        unavailable("nginx is missing")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_a_missing_component_is_skipped_elsewhere(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)

    with pytest.raises(pytest.skip.Exception, match="nginx is missing"):
        unavailable("nginx is missing")


def test_every_skip_goes_through_the_ci_rule():
    """A bare pytest.skip could hide a missing component in CI."""
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for path in (PROJECT_ROOT / "tests").rglob("*.py")
        if path.name not in ("ci.py", "test_quality.py")
        and any(
            marker in path.read_text()
            for marker in ("pytest.skip(", "pytest.mark.skip", "importorskip")
        )
    ]
    assert offenders == []


def test_ci_prepares_the_machine_then_runs_the_tests_with_ci_set():
    """Whatever the runner sets, .ci/run is CI: a missing component fails there.
    The linters, the engine and the images come before the tests."""
    lines = (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
    run_tests = lines.index(".venv/bin/pytest")
    before = "\n".join(lines[:run_tests])
    steps = [
        ".venv/bin/pre-commit run --all-files",
        "$(.ci/start-docker)",
        ".venv/bin/python .ci/prepare_images.py",
        "export CI=true",
    ]
    assert all(step in before for step in steps)
    assert sorted(steps, key=before.index) == steps
    assert "trap " in before.split(steps[1])[0]  # set before dockerd starts


def test_every_pre_commit_hook_runs_a_tool_of_the_test_group():
    """One list of linter versions: pyproject's test group, which .venv holds."""
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    assert {hook["language"] for hook in hooks} == {"system"}
    assert all(hook["entry"].startswith(".venv/bin/") for hook in hooks)
    assert all("additional_dependencies" not in hook for hook in hooks)


def test_the_web_images_requirements_are_pyprojects_pins_with_hashes():
    """docker/web/requirements.txt is compiled from pyproject.toml (its header
    says how); a pin changed in one place only would ship something else."""
    text = (ROOT / "docker" / "web" / "requirements.txt").read_text()
    pinned = {}
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]:
        name, version = requirement.split("==")
        name, _, extra = name.partition("[")
        pinned[name.lower()] = version
        if extra:  # psycopg[binary] brings psycopg-binary of the same version
            pinned[f"{name.lower()}-{extra.rstrip(']')}"] = version
    entries = re.findall(
        r"^([A-Za-z0-9._-]+)==(\S+) \\\n((?:\s+--hash=\S+.*\n)+)", text, re.M
    )

    assert {name.lower(): version for name, version, _ in entries} == pinned
    assert all("--hash=sha256:" in hashes for _, _, hashes in entries)
    assert "://" not in text  # no index address
