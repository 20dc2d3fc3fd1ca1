"""
docker/web/gunicorn.conf.py: gunicorn accepts it, its defaults suit a container
behind nginx, the environment overrides them, and a misconfigured site stops
gunicorn before it starts any worker.
"""

import re
import subprocess
import time

from loopback.gunicorn import gunicorn_command
from loopback.processes import free_port
from signup_site.postgresql import base
from tests.support.commands import PROJECT_ROOT, TEST_SECRET_KEY, site_environment
from tests.support.stack import nginx_seconds

# Settings are loaded, no connection made.
VALID_SITE = {"DJANGO_SECRET_KEY": TEST_SECRET_KEY, "POSTGRES_PASSWORD": "x"}


def gunicorn(*options, env, timeout=60):
    return subprocess.run(
        gunicorn_command(*options),
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def printed_config(**environment):
    result = gunicorn(
        "--print-config", env=site_environment(**VALID_SITE, **environment)
    )
    assert result.returncode == 0, result.stderr
    return dict(re.findall(r"^(\w+)\s+= (.*)$", result.stdout, re.MULTILINE))


def test_check_config_passes_with_a_valid_environment():
    result = gunicorn("--check-config", env=site_environment(**VALID_SITE))

    assert result.returncode == 0, result.stdout + result.stderr


def test_defaults_suit_a_container_behind_nginx():
    config = printed_config()

    assert config["bind"] == "['0.0.0.0:8000']"
    # Fixed, not derived from the host's CPUs (this machine's would differ).
    assert config["workers"] == "3"
    assert config["worker_class"] == "sync"
    assert config["timeout"] == "30"
    assert config["graceful_timeout"] == "30"
    assert config["max_requests"] == "10000"
    assert config["max_requests_jitter"] == "1000"
    assert config["worker_tmp_dir"] == "/dev/shm"
    assert config["forwarded_allow_ips"] == "['127.0.0.1', '::1']"
    assert config["secure_scheme_headers"] == "{'X-FORWARDED-PROTO': 'https'}"
    assert config["control_socket_disable"] == "True"
    # gunicorn's own preload: workers are forks of a master that loaded the site.
    assert config["preload_app"] == "True"
    assert config["accesslog"] == "-"
    assert config["errorlog"] == "-"
    assert "%({x-request-id}i)s" in config["access_log_format"]
    assert "%({x-forwarded-for}i)s" in config["access_log_format"]
    assert "%(L)s" in config["access_log_format"]


def test_the_site_ends_a_database_wait_before_nginx_or_gunicorn_give_up():
    """A lock wait is reported as one, the server answers before the site's
    own clock runs out, and the site's 503 page comes before nginx stops
    waiting (the longest a visitor waits) or gunicorn kills the worker."""
    lock = base.LOCK_TIMEOUT_MS / 1000
    statement = base.STATEMENT_TIMEOUT_MS / 1000
    longest_wait = base.HEALTH_CHECK_TIMEOUT + base.ANSWER_TIMEOUT

    assert lock < statement < base.ANSWER_TIMEOUT
    assert longest_wait < nginx_seconds("proxy_read_timeout")
    assert longest_wait < int(printed_config()["timeout"])


def test_the_environment_overrides_the_defaults(tmp_path):
    config = printed_config(
        GUNICORN_BIND="127.0.0.1:9001, unix:/run/signup.sock",
        WEB_CONCURRENCY="5",
        GUNICORN_TIMEOUT="20",
        GUNICORN_GRACEFUL_TIMEOUT="15",
        GUNICORN_KEEPALIVE="7",
        GUNICORN_MAX_REQUESTS="0",
        GUNICORN_MAX_REQUESTS_JITTER="0",
        GUNICORN_WORKER_TMP_DIR=str(tmp_path),
        GUNICORN_LOG_LEVEL="WARNING",
        FORWARDED_ALLOW_IPS="172.16.0.0/12",
        GUNICORN_CONTROL_SOCKET=str(tmp_path / "gunicorn.ctl"),
    )

    assert config["bind"] == "['127.0.0.1:9001', 'unix:/run/signup.sock']"
    assert config["workers"] == "5"
    assert config["timeout"] == "20"
    assert config["graceful_timeout"] == "15"
    assert config["keepalive"] == "7"
    assert config["max_requests"] == "0"
    assert config["max_requests_jitter"] == "0"
    assert config["worker_tmp_dir"] == str(tmp_path)
    assert config["loglevel"] == "warning"
    assert config["forwarded_allow_ips"] == "['172.16.0.0/12']"
    assert config["control_socket"] == str(tmp_path / "gunicorn.ctl")
    assert config["control_socket_disable"] == "False"


def test_bad_gunicorn_settings_stop_with_one_list_and_no_traceback():
    env = site_environment(
        **VALID_SITE,
        WEB_CONCURRENCY="0",
        GUNICORN_TIMEOUT="soon",
        GUNICORN_LOG_LEVEL="loud",
    )

    result = gunicorn("--check-config", env=env)

    assert result.returncode == 1
    assert result.stderr == (
        "gunicorn is not configured correctly:\n"
        "  - WEB_CONCURRENCY='0' is not a whole number of at least 1.\n"
        "  - GUNICORN_TIMEOUT='soon' is not a whole number of at least 1.\n"
        "  - GUNICORN_LOG_LEVEL='loud' is not one of debug, info, warning, error, "
        "critical.\n"
    )


def test_a_misconfigured_site_stops_gunicorn_at_once_with_the_list():
    env = site_environment(
        DJANGO_DEBUG="maybe",
        DJANGO_PUBLIC_URL="signup.example.com",
        GUNICORN_BIND=f"127.0.0.1:{free_port()}",
    )

    started = time.monotonic()
    result = gunicorn(env=env)
    elapsed = time.monotonic() - started

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert elapsed < 15, elapsed
    assert "The site is not configured correctly (3 problems):" in output
    assert "  - DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is not set" in output
    assert "  - DJANGO_DEBUG='maybe' is not a boolean" in output
    assert "  - DJANGO_PUBLIC_URL='signup.example.com' is not a site address" in output
    assert output.count("is not configured correctly") == 1
    assert "Traceback" not in output
    assert "Booting worker" not in output
    assert "Listening at" not in output


def test_gunicorn_and_site_problems_are_listed_together_before_anything_starts():
    env = site_environment(
        WEB_CONCURRENCY="0",
        DJANGO_DEBUG="maybe",
        GUNICORN_BIND=f"127.0.0.1:{free_port()}",
    )

    result = gunicorn(env=env)

    assert result.returncode == 1
    assert result.stderr.startswith(
        "gunicorn is not configured correctly:\n"
        "  - WEB_CONCURRENCY='0' is not a whole number of at least 1.\n"
        "The site is not configured correctly (2 problems):\n"
    )
    assert "  - DJANGO_DEBUG='maybe' is not a boolean" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Listening at" not in result.stdout + result.stderr
