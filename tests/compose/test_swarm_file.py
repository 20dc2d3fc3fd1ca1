"""
deploy/swarm/stack.yaml read as a file: the rules a Swarm deployment relies
on, and the overlap with compose.yaml that must not drift. What both need
lives in the images (healthchecks, nginx's defaults, the start script); what
is left written twice (service names, images, variable names and defaults,
the database's healthcheck) is compared here.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.support.ci import unavailable
from tests.support.commands import site_environment

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"
STACK_FILE = ROOT / "deploy" / "swarm" / "stack.yaml"
MAIL_FILE = ROOT / "deploy" / "swarm" / "mail.yaml"
KEY_ROTATION_FILE = ROOT / "deploy" / "swarm" / "key-rotation.yaml"
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
GUNICORN_CONFIG = ROOT / "docker" / "web" / "gunicorn.conf.py"

# Compose's way of finding the secrets it generates on first start; Swarm
# mounts Docker secrets and names them through *_FILE instead.
COMPOSE_ONLY_VARIABLES = {"SIGNUP_SECRETS_DIR"}
SECRET_VARIABLES = {
    "DJANGO_SECRET_KEY",
    "POSTGRES_PASSWORD",
    "DATABASE_URL",
    # The SMTP server's URL holds its password; old keys are keys.
    "EMAIL_URL",
    "DJANGO_SECRET_KEY_FALLBACKS",
}
# ${NAME:-default}, not the $${...} that Compose passes on to a shell.
DEFAULT = re.compile(r"(?<!\$)\$\{(\w+):-([^}]*)\}")


def load(path):
    return YAML(typ="safe").load(path.read_text())


@pytest.fixture(scope="module")
def stack():
    return load(STACK_FILE)


@pytest.fixture(scope="module")
def compose():
    return load(COMPOSE_FILE)


# Compose's one-shot that generates secrets; Swarm is given Docker secrets.
COMPOSE_ONLY_SERVICES = {"secrets"}


def running_services(compose):
    """compose.yaml's services that `docker compose up` starts and keeps."""
    return {
        name: service
        for name, service in compose["services"].items()
        if not service.get("profiles") and name not in COMPOSE_ONLY_SERVICES
    }


def seconds(duration):
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(duration))
    assert match, f"not a duration: {duration!r}"
    minutes, secs = (int(part or 0) for part in match.groups())
    return minutes * 60 + secs


def web_healthcheck_start_period():
    web_stage = DOCKERFILE.read_text().split("AS web")[1]
    return seconds(re.search(r"HEALTHCHECK .*--start-period=(\w+)", web_stage)[1])


def gunicorn_graceful_timeout():
    text = GUNICORN_CONFIG.read_text()
    return int(re.search(r'"GUNICORN_GRACEFUL_TIMEOUT", (\d+)', text)[1])


def test_the_stack_runs_the_services_and_images_compose_builds(stack, compose):
    services = running_services(compose)

    assert stack["services"].keys() == services.keys()
    for name, service in services.items():
        assert stack["services"][name]["image"] == service["image"], name
    assert services["web"]["image"] == (
        "${SIGNUP_REGISTRY:-localhost/signup}/web:${SIGNUP_VERSION:-latest}"
    )


def test_every_variable_compose_passes_is_passed_by_the_stack(stack, compose):
    missing = {}
    for name, service in running_services(compose).items():
        stack_names = set(stack["services"][name].get("environment") or {})
        for variable in set(service.get("environment") or {}) - COMPOSE_ONLY_VARIABLES:
            if not {variable, f"{variable}_FILE"} & stack_names:
                missing.setdefault(name, []).append(variable)

    assert not missing, (
        "compose.yaml passes these variables and deploy/swarm/stack.yaml does "
        f"not (add them there, or to the image): {missing}"
    )


def test_variables_in_both_files_have_the_same_defaults():
    def defaults(path):
        found = {}
        for name, value in DEFAULT.findall(path.read_text()):
            found.setdefault(name, set()).add(value)
        return found

    in_stack, in_compose = defaults(STACK_FILE), defaults(COMPOSE_FILE)
    shared = in_stack.keys() & in_compose.keys()

    assert {"SIGNUP_REGISTRY", "SIGNUP_VERSION", "POSTGRES_USER"} <= shared
    assert {name: in_stack[name] for name in shared} == {
        name: in_compose[name] for name in shared
    }


def test_the_stack_defaults_are_those_of_env_example():
    # Set lines, and the commented-out ones that show a default.
    documented = dict(
        re.match(r"(?:# )?([A-Z][A-Z0-9_]*)=(.*)", line).groups()
        for line in ENV_EXAMPLE.read_text().splitlines()
        if re.match(r"(?:# )?[A-Z][A-Z0-9_]*=", line)
    )
    defaults = dict(DEFAULT.findall(STACK_FILE.read_text()))

    assert defaults.keys() <= documented.keys()
    assert defaults == {name: documented[name] for name in defaults}


def test_the_database_healthcheck_is_the_same_in_both(stack, compose):
    assert (
        stack["services"]["db"]["healthcheck"]
        == (compose["services"]["db"]["healthcheck"])
    )


def test_web_updates_start_first_health_gated_and_roll_back(stack):
    web = stack["services"]["web"]
    deploy = web["deploy"]
    update = deploy["update_config"]

    assert "healthcheck" not in web, "web's healthcheck lives in the image"
    assert deploy["replicas"] == "${SIGNUP_WEB_REPLICAS:-3}"
    assert deploy["endpoint_mode"] == "dnsrr"
    assert update["order"] == "start-first"
    assert update["failure_action"] == "rollback"
    assert seconds(update["monitor"]) > web_healthcheck_start_period()
    assert deploy["rollback_config"]["order"] == "start-first"
    assert seconds(web["stop_grace_period"]) > gunicorn_graceful_timeout()


def test_nginx_is_the_only_public_entry_and_publishes_in_host_mode(stack):
    published = {
        name: service.get("ports") for name, service in stack["services"].items()
    }

    assert published["db"] is None
    assert published["web"] is None
    assert published["mailer"] is None
    (port,) = published["nginx"]
    assert port["mode"] == "host"
    assert port["target"] == 8080
    assert stack["services"]["nginx"]["networks"] == ["frontend"]


def test_the_database_is_pinned_to_a_labelled_node_with_its_volume(stack):
    db = stack["services"]["db"]

    assert db["deploy"]["placement"]["constraints"] == ["node.labels.signup.db == true"]
    assert db["deploy"]["update_config"]["order"] == "stop-first"
    assert "pgdata:/var/lib/postgresql" in db["volumes"]
    assert db["networks"] == ["backend"]
    assert stack["networks"]["backend"]["internal"] is True
    assert stack["volumes"]["pgdata"] in ({}, None)


def test_secrets_are_external_files_and_each_service_gets_only_its_own(stack):
    services = stack["services"]
    given = {name: sorted(s.get("secrets") or []) for name, s in services.items()}

    assert given == {
        "db": ["postgres_password"],
        "web": ["django_secret_key", "postgres_password"],
        "mailer": ["django_secret_key", "postgres_password"],
        "nginx": [],
    }
    for secret in stack["secrets"].values():
        assert secret["external"] is True
        assert set(secret) == {"external", "name"}
    for name, service in services.items():
        environment = service.get("environment") or {}
        assert not SECRET_VARIABLES & set(environment), name
        for variable, value in environment.items():
            if variable.endswith("_FILE"):
                secret = value.removeprefix("/run/secrets/")
                assert secret in given[name], (name, variable)


def test_the_stack_file_renders_with_docker_stack_config(tmp_path):
    rendered = stack_config(tmp_path, STACK_FILE)

    assert rendered["services"]["web"]["deploy"]["replicas"] == 3
    assert rendered["services"]["web"]["image"] == "localhost/signup/web:latest"
    assert rendered["services"]["nginx"]["ports"][0]["published"] == 8080
    assert rendered["secrets"]["postgres_password"]["name"] == (
        "signup_postgres_password"
    )


# --- The mailer -------------------------------------------------------------


def test_the_mailer_runs_as_in_compose(stack, compose):
    mailer, web = stack["services"]["mailer"], stack["services"]["web"]
    in_compose = compose["services"]["mailer"]

    assert mailer["image"] == web["image"]
    assert mailer["command"] == in_compose["command"]
    assert mailer["command"] == ["python", "manage.py", "deliver_mail"]
    assert mailer["healthcheck"] == in_compose["healthcheck"]
    assert mailer["stop_grace_period"] == in_compose["stop_grace_period"]
    assert sorted(mailer["networks"]) == sorted(in_compose["networks"])
    assert sorted(mailer["networks"]) == ["backend", "outbound"]
    assert not stack["networks"]["outbound"].get("internal")


def test_the_mailer_has_the_settings_web_has_but_gunicorns(stack):
    web = stack["services"]["web"]["environment"]
    mailer = stack["services"]["mailer"]["environment"]
    web_only = {"WEB_CONCURRENCY", "BOOTSTRAP_TIMEOUT", "WEB_STOP_DELAY"}

    assert {name: value for name, value in web.items() if name not in web_only} == (
        mailer
    )
    for name in ("DJANGO_PUBLIC_URL", "DEFAULT_FROM_EMAIL", "SIGNUP_DOUBLE_OPT_IN"):
        assert name in mailer


def test_mailer_updates_start_first_health_gated_and_roll_back(stack):
    mailer = stack["services"]["mailer"]
    deploy = mailer["deploy"]
    update = deploy["update_config"]
    check = mailer["healthcheck"]
    unhealthy_after = seconds(check["start_period"]) + seconds(check["interval"]) * int(
        check["retries"]
    )

    assert deploy["replicas"] == "${SIGNUP_MAILER_REPLICAS:-1}"
    assert update["order"] == "start-first"
    assert update["failure_action"] == "rollback"
    assert seconds(update["monitor"]) > unhealthy_after
    assert deploy["rollback_config"]["order"] == "start-first"
    assert deploy["restart_policy"]["condition"] == "any"
    for kind in ("reservations", "limits"):
        assert {"cpus", "memory"} <= deploy["resources"][kind].keys(), kind


@pytest.fixture(scope="module")
def mail():
    return load(MAIL_FILE)


def test_the_mail_file_hands_the_smtp_url_to_web_and_the_mailer_as_a_secret(mail):
    assert mail["secrets"] == {
        "email_url": {
            "external": True,
            "name": "${SIGNUP_SECRET_PREFIX:-signup}_email_url",
        }
    }
    assert sorted(mail["services"]) == ["mailer", "web"]
    for name, service in mail["services"].items():
        assert service["secrets"] == ["email_url"], name
        assert service["environment"] == {"EMAIL_URL_FILE": "/run/secrets/email_url"}, (
            name
        )


def stack_config(tmp_path, *files, **variables):
    docker = shutil.which("docker")
    if not docker:
        unavailable("the docker CLI is not installed (apt-get install -y docker.io)")
    environment = {**site_environment(**variables), "HOME": str(tmp_path)}
    arguments = [argument for path in files for argument in ("-c", str(path))]
    result = subprocess.run(
        [docker, "stack", "config", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return YAML(typ="safe").load(result.stdout)


def test_the_mail_file_layers_over_the_stack_with_docker_stack_config(tmp_path):
    plain = stack_config(tmp_path, STACK_FILE)
    rendered = stack_config(
        tmp_path, STACK_FILE, MAIL_FILE, SIGNUP_SECRET_PREFIX="shop"
    )

    for name in ("web", "mailer"):
        before = plain["services"][name]
        after = rendered["services"][name]
        assert "EMAIL_URL_FILE" not in before["environment"]
        assert after["environment"]["EMAIL_URL_FILE"] == "/run/secrets/email_url"
        # Merged, not replaced: the site's other settings and secrets stay.
        assert after["environment"]["POSTGRES_PASSWORD_FILE"] == (
            "/run/secrets/postgres_password"
        )
        assert sorted(s["source"] for s in after["secrets"]) == [
            "django_secret_key",
            "email_url",
            "postgres_password",
        ]
    assert rendered["services"]["nginx"] == plain["services"]["nginx"]
    assert rendered["secrets"]["email_url"]["name"] == "shop_email_url"
    assert rendered["services"]["mailer"]["deploy"]["replicas"] == 1


def test_a_new_key_is_a_new_secret_and_the_old_one_its_fallback(tmp_path):
    plain = stack_config(tmp_path, STACK_FILE)
    rotated = stack_config(
        tmp_path,
        STACK_FILE,
        KEY_ROTATION_FILE,
        SIGNUP_SECRET_PREFIX="shop",
        SIGNUP_SECRET_KEY_SUFFIX="_2",
    )

    assert plain["secrets"]["django_secret_key"]["name"] == "signup_django_secret_key"
    assert {name: secret["name"] for name, secret in rotated["secrets"].items()} == {
        "django_secret_key": "shop_django_secret_key_2",
        "django_secret_key_fallbacks": "shop_django_secret_key_fallbacks_2",
        "postgres_password": "shop_postgres_password",
    }
    for name in ("web", "mailer"):
        environment = rotated["services"][name]["environment"]
        assert environment["DJANGO_SECRET_KEY_FALLBACKS_FILE"] == (
            "/run/secrets/django_secret_key_fallbacks"
        )
        assert environment["DJANGO_SECRET_KEY_FILE"] == "/run/secrets/django_secret_key"
        assert sorted(s["source"] for s in rotated["services"][name]["secrets"]) == [
            "django_secret_key",
            "django_secret_key_fallbacks",
            "postgres_password",
        ]
    assert rotated["services"]["nginx"] == plain["services"]["nginx"]
    assert rotated["services"]["db"] == plain["services"]["db"]
