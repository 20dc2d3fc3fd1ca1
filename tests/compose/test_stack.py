"""
The way users run the project, in a real Docker engine: `docker compose up`
on a fresh clone with no .env, the site on port 8080, `bootstrap` through
`docker compose exec`, the admin, scaling, and data that survives `down`.

The images are those SIGNUP_TEST_IMAGES selects (tests/compose/images.py): by
default stand-ins built from Debian packages, swapped in by
compose.standins.yaml for machines that reach no registry; with ``official``,
the official images, pulled. The site's own images are built from
docker/Dockerfile as a user would build them.
"""

import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from loopback.processes import free_port
from tests.compose import engine, images, traffic
from tests.support.ci import running_in_ci
from tests.support.commands import site_environment

pytestmark = pytest.mark.engine

ADMIN_USER = "owner"
ADMIN_PASSWORD = "compose test admin passphrase"


def port_is_free(port):
    """Whether a server could listen on PORT (connections in TIME_WAIT do not
    count: servers, docker-proxy included, bind with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Stack:
    def __init__(self, project, port):
        self.project = project
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def __call__(self, *args, **kwargs):
        return self.project(*args, **kwargs)

    def sql(self, query):
        result = self(
            "exec",
            "-T",
            "db",
            "psql",
            "-U",
            "signup",
            "-d",
            "signup",
            "-At",
            "-c",
            query,
        )
        return result.stdout.strip()

    def scale_web(self, replicas):
        self(
            *("up", "--detach", "--wait", "--wait-timeout", "180"),
            *("--scale", f"web={replicas}", "--no-recreate"),
            timeout=600,
        )

    def container_ids(self, service):
        result = self("ps", "--quiet", service)
        return sorted(result.stdout.split())

    def wait_for_site(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                # nginx answers the probes itself (404); this page is web's.
                if requests.get(self.base + "/thanks/", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"site not ready on {self.base}")
            time.sleep(1)


@pytest.fixture(scope="module")
def stack(docker_engine, run_prefix, tmp_path_factory):
    # Port 8080, as users run it. A developer whose 8080 is busy (another
    # stack, another test run) gets a free port; CI insists on 8080.
    if port_is_free(8080):
        port = 8080
    else:
        assert not running_in_ci(), "port 8080 on 127.0.0.1 is taken"
        port = free_port()
    clone = engine.fresh_clone(tmp_path_factory.mktemp("clone"))
    assert not (clone / ".env").exists()
    env = site_environment(SIGNUP_BIND_ADDRESS="127.0.0.1", SIGNUP_PORT=port)
    env.pop("DJANGO_SETTINGS_MODULE")
    project = engine.ComposeProject(
        name=f"{run_prefix}-stack",
        files=images.compose_files(clone / "compose.yaml"),
        env=env,
        cwd=clone,
    )
    stack = Stack(project, port)
    try:
        # No --build: as on a fresh clone, Compose finds no image under the
        # localhost/ name, cannot pull one, and builds it.
        stack("up", "--detach", "--wait", "--wait-timeout", "300", timeout=1200)
        yield stack
    finally:
        logs = project("logs", "--no-color", "--tail", "200", check=False)
        print(logs.stdout[-20000:])
        project.down()


def browser_session(stack, *, wait=traffic.FILL_SECONDS):
    """(session, the form's fields as the page gives them): the CSRF token and
    the sign-up form token, after WAIT seconds, a person's time to fill in."""
    session = requests.Session()
    session.headers["User-Agent"] = "signup-compose-test"
    page = session.get(stack.base + "/", timeout=10)
    assert page.status_code == 200
    time.sleep(wait)
    return session, {
        "csrfmiddlewaretoken": traffic.TOKEN.search(page.text).group(1),
        "signup_token": traffic.FORM_TOKEN.search(page.text).group(1),
    }


def sign_up(session, stack, data):
    """POST the form DATA as the browser on SESSION, redirects not followed."""
    return session.post(
        stack.base + "/",
        data=data,
        headers={"Origin": stack.base, "Referer": stack.base + "/"},
        allow_redirects=False,
        timeout=10,
    )


def test_project_directory_has_no_env_file(stack):
    assert not (Path(stack.project.cwd) / ".env").exists()


def test_every_service_is_healthy_after_up_wait(stack):
    listing = stack("ps", "--format", "json").stdout
    services = [json.loads(line) for line in listing.splitlines() if line.strip()]

    assert sorted(s["Service"] for s in services) == ["db", "mailer", "nginx", "web"]
    assert all(s["Health"] == "healthy" for s in services), services


def test_signup_through_nginx_lands_as_a_row_in_db(stack):
    session, form = browser_session(stack)
    email = f"compose-{uuid.uuid4().hex[:8]}@example.com"

    response = sign_up(session, stack, {**form, "name": "Compose Test", "email": email})

    assert response.status_code == 302, response.text[:500]
    assert response.headers["Location"] == "/thanks/"
    assert session.get(stack.base + "/thanks/", timeout=10).status_code == 200
    assert (
        stack.sql(f"SELECT name FROM accounts_signup WHERE email = '{email}'")
        == "Compose Test"
    )


@pytest.fixture(scope="module")
def admin_bootstrap(stack):
    """`bootstrap` through `docker compose exec`, creating the admin account."""
    return stack(
        "exec",
        "-T",
        "-e",
        f"DJANGO_SUPERUSER_USERNAME={ADMIN_USER}",
        "-e",
        "DJANGO_SUPERUSER_EMAIL=owner@example.com",
        "-e",
        f"DJANGO_SUPERUSER_PASSWORD={ADMIN_PASSWORD}",
        "web",
        "python",
        "manage.py",
        "bootstrap",
    )


def test_bootstrap_through_compose_exec_exits_0_twice(stack, admin_bootstrap):
    second = stack("exec", "-T", "web", "python", "manage.py", "bootstrap")

    assert admin_bootstrap.returncode == 0
    assert "schema already up to date" in admin_bootstrap.stdout
    assert f'admin account "{ADMIN_USER}" created' in admin_bootstrap.stdout
    assert second.returncode == 0
    assert "schema already up to date; no admin account configured" in second.stdout
    assert (
        stack.sql(f"SELECT is_superuser FROM auth_user WHERE username = '{ADMIN_USER}'")
        == "t"
    )


def test_admin_login_works_and_its_css_loads(stack, admin_bootstrap):
    session = requests.Session()
    login = session.get(stack.base + "/admin/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(
        1
    )

    response = session.post(
        stack.base + "/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": token,
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "next": "/admin/",
        },
        headers={"Origin": stack.base, "Referer": stack.base + "/admin/login/"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text[:500]
    assert response.headers["Location"] == "/admin/"
    index = session.get(stack.base + "/admin/", timeout=10)
    assert index.status_code == 200
    assert "Site administration" in index.text

    stylesheet = re.search(
        r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', index.text
    )
    assert stylesheet, "the admin page links its hashed stylesheet"
    css = session.get(stack.base + stylesheet.group(1), timeout=10)
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    assert "immutable" in css.headers.get("Cache-Control", "")
    assert "#header" in css.text


def count_probe_lines(stack, container_id, token):
    logs = engine.docker("logs", container_id, check=False)
    return (logs.stdout + logs.stderr).count(token)


def refused_today(stack):
    return int(
        stack.sql(
            "SELECT coalesce(sum(count), 0) FROM accounts_refusaltally"
            " WHERE day = current_date"
        )
    )


def test_scripts_store_nothing_and_the_owner_sees_them_counted(stack, admin_bootstrap):
    """A filled trap and a forged token get the thank-you page, a form sent
    at once gets the form back: no row, a log line each, and the count on the
    owner's list once gunicorn's workers have handed theirs in. (Three POSTs:
    nginx allows this client 5 a minute, burst 5.)"""
    rows = stack.sql("SELECT count(*) FROM accounts_signup")
    refused = refused_today(stack)
    session, form = browser_session(stack)
    fast_session, fast_form = browser_session(stack, wait=0)
    attempts = [
        (session, {**form, "leave_empty": "Cheap pills"}, 302),
        (session, {**form, "signup_token": "1AbCdE:forged-signature"}, 302),
        (fast_session, fast_form, 200),
    ]

    for number, (client, data, status) in enumerate(attempts):
        email = f"bot-{number}-{uuid.uuid4().hex[:8]}@spam.example"
        response = sign_up(
            client, stack, {**data, "name": "Cheap pills", "email": email}
        )
        assert response.status_code == status, response.text[:500]
        if status == 200:
            assert "Please check your details and send the form again." in (
                response.text
            )

    assert stack.sql("SELECT count(*) FROM accounts_signup") == rows
    logs = stack("logs", "--no-color", "web").stdout
    for reason in ("trap field filled in", "forged form token", "sent too fast"):
        assert re.search(
            rf"Sign-up refused as automated: {reason} \(client [0-9a-f.:]+,"
            r" request id [0-9a-f]{32}\)",
            logs,
        ), reason
    # HUP: gunicorn replaces its workers gracefully; each hands in its count.
    stack("kill", "--signal", "HUP", "web")
    deadline = time.monotonic() + 30
    while refused_today(stack) < refused + 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert refused_today(stack) == refused + 3
    owner = requests.Session()
    login = owner.get(stack.base + "/admin/login/", timeout=10)
    owner.post(
        stack.base + "/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": traffic.TOKEN.search(login.text).group(1),
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
        },
        headers={"Origin": stack.base},
        timeout=10,
    )
    changelist = owner.get(stack.base + "/admin/accounts/signup/", timeout=10)
    total = refused + 3
    assert f"{total} refused as automated (today {total})." in changelist.text


def test_scaling_spreads_requests_over_every_replica_then_scales_back(stack):
    stack.scale_web(3)
    replicas = stack.container_ids("web")
    assert len(replicas) == 3

    token = f"scale-{uuid.uuid4().hex[:10]}"
    deadline = time.monotonic() + 30
    counts = {}
    sent = 0
    while time.monotonic() < deadline:
        for _ in range(30):
            response = requests.get(f"{stack.base}/thanks/?probe={token}", timeout=10)
            assert response.status_code == 200
            sent += 1
        counts = {rid: count_probe_lines(stack, rid, token) for rid in replicas}
        if all(counts.values()):
            break
    assert all(counts.values()), f"requests per replica: {counts}"
    # gunicorn writes its line after the response: give the last ones time.
    settle = time.monotonic() + 10
    while sum(counts.values()) < sent and time.monotonic() < settle:
        time.sleep(0.5)
        counts = {rid: count_probe_lines(stack, rid, token) for rid in replicas}
    assert sum(counts.values()) == sent, counts

    stack.scale_web(1)
    assert len(stack.container_ids("web")) == 1
    failures = []
    finish = time.monotonic() + 12
    while time.monotonic() < finish:
        response = requests.get(stack.base + "/", timeout=10)
        if response.status_code != 200:
            failures.append(response.status_code)
    assert failures == []


def test_nginx_cannot_reach_the_database(stack):
    lookup = stack("exec", "-T", "nginx", "getent", "hosts", "db", check=False)
    assert lookup.returncode != 0, lookup.stdout

    db_id = stack.container_ids("db")[0]
    addresses = json.loads(
        engine.docker(
            "inspect", "--format", "{{json .NetworkSettings.Networks}}", db_id
        ).stdout
    )
    for network in addresses.values():
        probe = stack(
            "exec",
            "-T",
            "nginx",
            "curl",
            "--silent",
            "--max-time",
            "3",
            f"http://{network['IPAddress']}:5432/",
            check=False,
        )
        # 7: could not connect, 28: timed out. 52 (empty reply) would mean
        # the connection was made.
        assert probe.returncode in (7, 28), probe


def test_only_nginx_publishes_a_port_and_only_the_one_asked_for(stack):
    published = {}
    for service in ("db", "web", "mailer", "nginx"):
        for container_id in stack.container_ids(service):
            ports = engine.docker("port", container_id).stdout.split()
            published.setdefault(service, []).extend(ports)

    assert published.get("db", []) == []
    assert published.get("web", []) == []
    assert published.get("mailer", []) == []
    assert f"127.0.0.1:{stack.port}" in published["nginx"]
    assert all(p.startswith("127.0.0.1:") for p in published["nginx"] if ":" in p)


def listing(stack, *shell):
    """Name, octal mode and owner's uid of each file in the secrets directory,
    as SHELL (a compose command that ends in a shell) sees it."""
    script = "cd /run/signup-secrets && stat -c '%n %a %u' * .[!.]* 2>/dev/null"
    lines = stack(*shell, "-c", f"{script}; true").stdout.splitlines()
    return sorted(line for line in lines if line.strip())


def test_each_service_sees_only_its_secrets_readable_by_its_user(stack):
    db = listing(stack, "exec", "-T", "db", "sh")
    web = listing(stack, "exec", "-T", "web", "sh")
    mailer = listing(stack, "exec", "-T", "mailer", "sh")
    backup = listing(stack, "run", "--rm", "-T", "--entrypoint", "sh", "backup")
    # That run made the `backups` volume, which `down -v` keeps (a later test
    # checks that it leaves no volume): it holds nothing yet.
    engine.docker("volume", "rm", f"{stack.project.name}_backups")
    other_user = stack(
        *("exec", "-T", "--user", "4242", "web"),
        *("cat", "/run/signup-secrets/django_secret_key"),
        check=False,
    )
    as_postgres = stack(
        *("exec", "-T", "--user", "postgres", "db"),
        *("cat", "/run/signup-secrets/postgres_password"),
    )

    assert db == ["postgres_password 400 999"]
    assert backup == ["postgres_password 400 999"]
    assert web == [
        "django_secret_key 400 10001",
        "postgres_password 400 10001",
    ]
    assert mailer == web
    assert other_user.returncode != 0
    assert "Permission denied" in other_user.stderr
    assert len(as_postgres.stdout) >= 32


def test_generated_secrets_appear_in_no_image_log_or_response(stack):
    secrets = {
        name: stack(
            "exec", "-T", "web", "cat", f"/run/signup-secrets/{name}"
        ).stdout.strip()
        for name in ("django_secret_key", "postgres_password")
    }
    assert len(secrets["django_secret_key"]) >= 50
    assert len(secrets["postgres_password"]) >= 32

    places = {"logs": stack("logs", "--no-color").stdout}
    for service in ("web", "nginx"):
        (container, *_) = stack.container_ids(service)
        image = inspect(container, "Config.Image")
        places[f"{image} history"] = engine.docker(
            "history", "--no-trunc", "--format", "{{.CreatedBy}}", image
        ).stdout
        places[f"{image} config"] = engine.docker("image", "inspect", image).stdout
    for path in ("/", "/thanks/", "/admin/login/", "/no-such-page", "/readyz"):
        places[path] = requests.get(stack.base + path, timeout=10).text
    for place, text in places.items():
        for name, value in secrets.items():
            assert value not in text, f"{name} appears in {place}"


def inspect(container_id, field):
    """One field of `docker inspect`, e.g. "State.ExitCode"."""
    return engine.docker(
        "inspect", "--format", f"{{{{.{field}}}}}", container_id
    ).stdout.strip()


def wait_until_healthy(container_id, timeout=180):
    deadline = time.monotonic() + timeout
    while inspect(container_id, "State.Health.Status") != "healthy":
        assert time.monotonic() < deadline, f"{container_id} not healthy"
        time.sleep(1)


def test_web_stopped_under_load_drains_and_exits_0(stack):
    (web,) = stack.container_ids("web")
    statuses = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                statuses.append(requests.get(stack.base + "/", timeout=10).status_code)
            except requests.RequestException as exc:
                statuses.append(type(exc).__name__)

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(1)
    stack("stop", "web", timeout=120)
    stop.set()
    thread.join(timeout=30)
    try:
        assert inspect(web, "State.ExitCode") == "0"
        # Requests were answered until gunicorn closed its socket; then nginx
        # answered for the missing app with its branded page: 502 once the
        # name is gone, 504 while its cached address no longer answers.
        # Nothing was cut off half-way (no connection error).
        assert 200 in statuses
        assert set(statuses) <= {200, 502, 504}, set(statuses)
    finally:
        stack("start", "web", timeout=300)
        wait_until_healthy(web)


def test_web_killed_hard_gives_the_branded_502_and_is_restarted(stack):
    (web,) = stack.container_ids("web")
    restarts = int(inspect(web, "RestartCount") or 0)

    # A crash, not `docker kill` (which Docker counts as a manual stop and so
    # never restarts): SIGKILL to the container's PID 1 by its host pid.
    os.kill(int(inspect(web, "State.Pid")), signal.SIGKILL)
    down = requests.get(stack.base + "/", timeout=10)

    assert down.status_code == 502
    assert "<h1>Back in a moment</h1>" in down.text
    assert down.headers["Content-Security-Policy"]
    # The restart policy (unless-stopped) brings it back, bootstrap and all.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(stack.base + "/", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(1)
    assert requests.get(stack.base + "/", timeout=5).status_code == 200
    assert int(inspect(web, "RestartCount")) > restarts
    wait_until_healthy(web)


def test_the_admin_from_env_reaches_bootstrap_as_the_readme_says(stack):
    """The README's two ways to the admin account from DJANGO_SUPERUSER_*: a
    running container keeps the environment it was created with, so a new
    .env reaches `bootstrap` through `docker compose up -d`, which creates web
    again, and otherwise only through `exec -e`."""
    env_file = Path(stack.project.cwd) / ".env"
    (web_before,) = stack.container_ids("web")
    env_file.write_text(
        "DJANGO_SUPERUSER_USERNAME=from-env\n"
        f"DJANGO_SUPERUSER_PASSWORD={ADMIN_PASSWORD}\n"
    )
    try:
        unchanged = stack("exec", "-T", "web", "python", "manage.py", "bootstrap")
        given = stack(
            *("exec", "-T", "-e", "DJANGO_SUPERUSER_USERNAME=given"),
            *("-e", f"DJANGO_SUPERUSER_PASSWORD={ADMIN_PASSWORD}"),
            *("web", "python", "manage.py", "bootstrap"),
        )
        stack("up", "--detach", "--wait", "--wait-timeout", "300", timeout=900)
        (web_after,) = stack.container_ids("web")
    finally:
        env_file.unlink()

    assert "no admin account configured" in unchanged.stdout
    assert 'admin account "given" created' in given.stdout
    assert web_after != web_before
    assert (
        stack.sql(
            "SELECT string_agg(username, ' ' ORDER BY username) FROM auth_user"
            " WHERE username IN ('from-env', 'given')"
        )
        == "from-env given"
    )


def anonymous_volumes(stack):
    """The volumes mounted in the project's containers that it did not name."""
    project = stack.project.name
    containers = engine.docker(
        "ps",
        "--all",
        "--quiet",
        "--filter",
        f"label=com.docker.compose.project={project}",
    ).stdout.split()
    mounts = engine.docker("inspect", "--format", "{{json .Mounts}}", *containers)
    return [
        mount["Name"]
        for line in mounts.stdout.splitlines()
        for mount in json.loads(line)
        if mount["Type"] == "volume" and not mount["Name"].startswith(f"{project}_")
    ]


def test_down_and_up_keep_the_data_and_down_v_removes_it(stack):
    email = f"persist-{uuid.uuid4().hex[:8]}@example.com"
    session, form = browser_session(stack)
    session.post(
        stack.base + "/",
        data={**form, "name": "Persistent", "email": email},
        headers={"Origin": stack.base},
        timeout=10,
    )
    assert (
        stack.sql(f"SELECT count(*) FROM accounts_signup WHERE email = '{email}'")
        == "1"
    )

    # `down` without --volumes removes no volume, so an anonymous one (a
    # VOLUME in an image with nothing mounted there) would be left behind.
    assert anonymous_volumes(stack) == []
    stack("down", timeout=300)
    stack("up", "--detach", "--wait", "--wait-timeout", "300", timeout=900)
    stack.wait_for_site()

    assert (
        stack.sql(f"SELECT count(*) FROM accounts_signup WHERE email = '{email}'")
        == "1"
    )

    stack("down", "--volumes", timeout=300)
    volumes = engine.docker(
        "volume",
        "ls",
        "--quiet",
        "--filter",
        f"label=com.docker.compose.project={stack.project.name}",
    ).stdout.split()
    assert volumes == []
