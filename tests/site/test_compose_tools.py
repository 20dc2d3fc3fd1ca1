"""
compose.yaml's one-shot backup tools and the development override, as
Compose resolves them on a fresh clone (no .env). The engine tests run them
(tests/compose/test_backup.py, tests/compose/test_dev_mode.py).
"""

import json
import subprocess

import pytest
import yaml

from tests.compose.engine import compose_binary
from tests.support.commands import PROJECT_ROOT, site_environment


def resolved(*args, **env):
    environment = {**site_environment(**env), "HOME": "/nonexistent"}
    environment.pop("DJANGO_SETTINGS_MODULE")
    result = subprocess.run(
        [str(compose_binary()), *args, "config", "--format", "json"],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def with_backup_profile():
    return resolved("--file", "compose.yaml", "--profile", "backup")


@pytest.fixture(scope="module")
def development():
    return resolved("--file", "compose.yaml", "--file", "compose.dev.yaml")


def test_up_never_starts_the_backup_tools():
    services = resolved("--file", "compose.yaml")["services"]

    assert sorted(services) == ["db", "mailer", "nginx", "secrets", "web"]


def test_each_service_mounts_only_the_secrets_it_uses(with_backup_profile):
    services = with_backup_profile["services"]
    mounted = {
        name: {
            volume["source"]: volume
            for volume in service.get("volumes", [])
            if volume["type"] == "volume" and "secrets" in volume["source"]
        }
        for name, service in services.items()
    }

    assert mounted["secrets"].keys() == {"secrets", "db-secrets", "web-secrets"}
    assert services["secrets"]["network_mode"] == "none"
    assert mounted["web"].keys() == {"web-secrets"}
    # The mailer signs links and reads the database: web's two secrets.
    assert mounted["mailer"].keys() == {"web-secrets"}
    assert mounted["nginx"] == {}
    for name in ("db", "backup", "restore"):
        assert mounted[name].keys() == {"db-secrets"}, name
    for name in ("db", "web", "mailer", "backup", "restore"):
        (volume,) = mounted[name].values()
        assert volume["read_only"] is True, name
    assert services["db"]["depends_on"]["secrets"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["db"]["environment"]["POSTGRES_PASSWORD_FILE"] == (
        "/run/signup-secrets/postgres_password"
    )
    assert "POSTGRES_PASSWORD" not in services["db"]["environment"]


def test_the_database_healthcheck_probes_tcp_and_reads_no_secret(with_backup_profile):
    # The secret lookup lives in signup_site/configuration.py and
    # docker/postgres-tools/backup.sh only; readiness needs no password.
    (kind, probe) = with_backup_profile["services"]["db"]["healthcheck"]["test"]

    assert kind == "CMD-SHELL"
    assert probe.startswith("pg_isready --quiet --host=127.0.0.1 ")
    assert "PASSWORD" not in probe


def test_backup_and_restore_run_the_script_in_the_database_image(with_backup_profile):
    services = with_backup_profile["services"]
    backup, restore = services["backup"], services["restore"]

    for tool in (backup, restore):
        assert tool["image"] == services["db"]["image"]
        assert tool["profiles"] == ["backup"]
        assert tool["networks"].keys() == {"backend"}
        assert "ports" not in tool
        assert tool["depends_on"]["db"]["condition"] == "service_healthy"
        mounts = {volume["target"]: volume for volume in tool["volumes"]}
        assert mounts["/backups"]["source"] == "backups"
        assert mounts["/run/signup-secrets"]["read_only"] is True
        assert mounts["/usr/local/bin/signup-backup"]["source"] == str(
            PROJECT_ROOT / "docker" / "postgres-tools" / "backup.sh"
        )
        assert tool["environment"]["BACKUP_KEEP"] == "7"
        assert tool["environment"]["POSTGRES_USER"] == "signup"
    assert backup["entrypoint"] == ["/bin/sh", "/usr/local/bin/signup-backup"]
    assert backup["command"] == ["backup"]
    # `run --rm restore NAME` replaces the command, not the sub-command.
    assert restore["entrypoint"][-1] == "restore"
    assert restore["command"] == ["latest"]
    assert "backups" in with_backup_profile["volumes"]


def test_backups_can_go_to_a_host_folder():
    config = resolved(
        "--file",
        "compose.yaml",
        "--profile",
        "backup",
        SIGNUP_BACKUP_DIR="/var/backups/signup",
    )

    mounts = {v["target"]: v for v in config["services"]["backup"]["volumes"]}
    assert mounts["/backups"]["type"] == "bind"
    assert mounts["/backups"]["source"] == "/var/backups/signup"


def test_development_mode_reloads_code_with_debug_on(development):
    web = development["services"]["web"]

    assert web["environment"]["DJANGO_DEBUG"] == "true"
    command = " ".join(web["command"])
    assert "manage.py bootstrap" in command
    assert "exec python manage.py runserver 0.0.0.0:8000" in command
    mounts = {volume["target"]: volume for volume in web["volumes"]}
    for target in ("/app/accounts", "/app/signup_site", "/app/manage.py"):
        assert mounts[target]["type"] == "bind"
        assert mounts[target]["read_only"] is True
    nginx_mounts = {v["target"]: v for v in development["services"]["nginx"]["volumes"]}
    assert nginx_mounts["/srv/static/site"]["source"] == str(
        PROJECT_ROOT / "signup_site" / "static"
    )
    for target in ("/srv/static/site", "/srv/static/accounts"):
        assert nginx_mounts[target]["read_only"] is True


def test_the_mailer_is_web_with_another_command():
    services = resolved("--file", "compose.yaml")["services"]
    web, mailer = services["web"], services["mailer"]

    assert mailer["image"] == web["image"]
    assert "build" not in mailer  # web builds the one image both run
    assert mailer["command"] == ["python", "manage.py", "deliver_mail"]
    # The same settings: .env's mail variables reach both (Compose's
    # resolved form has already read the env_file, so look at the file).
    raw = yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text())["services"]
    assert raw["mailer"]["env_file"] == raw["web"]["env_file"]
    assert raw["web"]["env_file"][0]["path"] == ".env"
    assert mailer["environment"] == web["environment"]
    assert mailer["volumes"] == web["volumes"]
    assert "ports" not in mailer
    assert mailer["restart"] == web["restart"]


def test_the_mailer_has_its_own_healthcheck_and_time_to_finish_a_mail():
    mailer = resolved("--file", "compose.yaml")["services"]["mailer"]
    dockerfile = (PROJECT_ROOT / "docker" / "Dockerfile").read_text()

    # web's image checks gunicorn, which the mailer does not run: a
    # healthcheck of its own replaces that one.
    assert "/readyz" in dockerfile.split("AS web")[1]
    assert mailer["healthcheck"]["test"] == [
        "CMD",
        "python",
        "/app/docker/web/mailer-alive.py",
    ]
    assert (PROJECT_ROOT / "docker" / "web" / "mailer-alive.py").is_file()
    # The mail in hand gets three SMTP timeouts (EMAIL_TIMEOUT, 10 s).
    assert int(mailer["stop_grace_period"].removesuffix("s")) >= 3 * 10


def test_development_mode_prints_mail_unless_env_names_a_server(development):
    for name in ("web", "mailer"):
        environment = development["services"][name]["environment"]
        assert environment["EMAIL_URL"] == "consolemail://", name
        assert environment["DEFAULT_FROM_EMAIL"] == "signup@localhost", name
    mailer_mounts = {
        volume["target"]: volume
        for volume in development["services"]["mailer"]["volumes"]
    }
    for target in ("/app/accounts", "/app/signup_site", "/app/manage.py"):
        assert mailer_mounts[target]["read_only"] is True
    own = resolved(
        "--file",
        "compose.yaml",
        "--file",
        "compose.dev.yaml",
        EMAIL_URL="smtp://mail.example.com:587",
        DEFAULT_FROM_EMAIL="team@example.com",
    )
    for name in ("web", "mailer"):
        environment = own["services"][name]["environment"]
        assert environment["EMAIL_URL"] == "smtp://mail.example.com:587"
        assert environment["DEFAULT_FROM_EMAIL"] == "team@example.com"


def test_development_mode_keeps_the_same_data_and_ports():
    normal = resolved("--file", "compose.yaml")
    development = resolved("--file", "compose.yaml", "--file", "compose.dev.yaml")

    assert development["name"] == normal["name"]
    assert development["volumes"] == normal["volumes"]
    assert development["services"]["db"] == normal["services"]["db"]
    # The same port, on loopback only (tests/compose/test_dev_mode.py).
    assert [
        {**port, "host_ip": "127.0.0.1"}
        for port in normal["services"]["nginx"]["ports"]
    ] == development["services"]["nginx"]["ports"]
