"""
The site on Docker Swarm, as docs/swarm.md deploys it: images built with
`docker compose build`, published with `docker compose push` to a real
registry (Debian's docker-registry on loopback), the local tags dropped, and
`docker stack deploy -c deploy/swarm/stack.yaml` on a single-node swarm
pulling them back. One stack serves the whole module; the tests run in order
(deploy, scale, rolling update, failed update, killed task, nginx update,
change of key, stack rm).

With the stand-ins (SIGNUP_TEST_IMAGES, tests/compose/images.py), the postgres
stand-in, pushed to the loopback registry too, replaces the official image
(stack.standins.yaml), as compose.standins.yaml does for Compose; with the
official images, the swarm pulls postgres as the stack file names it.
"""

import itertools
import json
import os
import re
import secrets
import signal
import subprocess
import time
import uuid

import pytest
import requests

from accounts.bots import issue_token
from loopback.processes import free_port, wait_for
from tests.compose import engine, swarm, traffic
from tests.compose.images import STANDINS, selected
from tests.compose.swarm import Stack
from tests.support.ci import unavailable
from tests.support.commands import site_environment

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

ADMIN_USER = "owner"
ADMIN_PASSWORD = "swarm test admin passphrase"
FIRST_VERSION = "1.0.0"
NEXT_VERSION = "1.0.1"
BROKEN_VERSION = "1.0.2-broken"
TEST_REPLICAS = 1
# The stack's numbers for a machine with two cores: fewer workers per task,
# and rate limits that a test posting from one address never reaches.
TEST_SETTINGS = {
    "WEB_CONCURRENCY": "2",
    "NGINX_SIGNUP_RATE": "100000r/s",
    "NGINX_SIGNUP_BURST": "100000",
    "NGINX_LOGIN_RATE": "100000r/s",
    "NGINX_LOGIN_BURST": "100000",
}
KEY_ROTATION_FILE = swarm.STACK_FILE.parent / "key-rotation.yaml"
# The docs' wait between the two deploys of a change of key.
(WAIT_FOR_REPLACED,) = [
    line
    for line in (engine.PROJECT_ROOT / "docs" / "swarm.md").read_text().splitlines()
    if line.startswith("while docker service ps")
]
UPSTREAM = re.compile(r"upstream=(.*?) ustatus=")


@pytest.fixture(scope="module")
def single_node_swarm(docker_engine):
    try:
        node = swarm.SingleNodeSwarm.join()
    except swarm.SwarmUnavailable as exc:
        unavailable(f"Swarm tests did not run: {exc}")
    yield node
    node.leave()


def docker_json(*args):
    return json.loads(engine.docker(*args).stdout)


def registry_references(prefix):
    """REPOSITORY@DIGEST of every local image pulled from PREFIX."""
    listing = engine.docker(
        "image", "ls", "--digests", "--format", "{{.Repository}}@{{.Digest}}"
    ).stdout.split()
    return [ref for ref in listing if ref.startswith(prefix + "/")]


@pytest.fixture(scope="module")
def images(docker_engine, loopback_registry, run_prefix):
    """The site's images, built and pushed to the loopback registry, with no
    local tag left: whatever runs them must pull them from the registry."""
    prefix = f"{loopback_registry.address}/signup"
    web = f"{prefix}/web"
    tags = swarm.site_image_tags(prefix, FIRST_VERSION)
    try:
        swarm.push_site_images(prefix, FIRST_VERSION, f"{run_prefix}-swarm-images")
        # A new release of web (same code, new image) and one that cannot
        # start: its process exits at once.
        for version, extra in ((NEXT_VERSION, ""), (BROKEN_VERSION, 'CMD ["false"]')):
            tag = f"{web}:{version}"
            tags.append(tag)
            dockerfile = (
                f"FROM {web}:{FIRST_VERSION}\n"
                f"LABEL org.opencontainers.image.version={version}\n{extra}\n"
            )
            engine.docker("build", "--tag", tag, "-", input=dockerfile, timeout=300)
            engine.docker("push", tag, timeout=300)
        if selected() == STANDINS:
            db = f"{prefix}/postgres-standin:test"
            tags.append(db)
            engine.docker("tag", engine.STANDIN_IMAGES["postgres"], db)
            engine.docker("push", db, timeout=600)
        assert loopback_registry.tags("signup/web") == sorted(
            [FIRST_VERSION, NEXT_VERSION, BROKEN_VERSION]
        )
        assert loopback_registry.tags("signup/nginx") == [FIRST_VERSION]
        engine.docker("image", "rm", *tags)
        assert not any(engine.image_exists(tag) for tag in tags)
        yield prefix
    finally:
        for tag in tags:
            engine.docker("image", "rm", tag, check=False)
        # What the swarm pulled: only the references this run made.
        for reference in registry_references(prefix):
            engine.docker("image", "rm", reference, check=False)


class SwarmSite:
    def __init__(self, stack, port, secret_values):
        self.stack = stack
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.secret_values = secret_values
        # Docker secrets this run made, removed once the stack is gone.
        self.secrets_made = []

    def create_secret(self, name, value):
        engine.docker("secret", "create", name, "-", input=value)
        self.secrets_made.append(name)

    def first_200(self, timeout=300):
        def answers():
            try:
                return requests.get(self.base + "/", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answers, timeout=timeout, interval=0.25, message="first 200")

    def nginx_upstreams(self, token):
        (task,) = self.stack.running_tasks("nginx")
        logs = engine.docker("logs", self.stack.container(task))
        found = []
        for line in (logs.stdout + logs.stderr).splitlines():
            if token in line and (match := UPSTREAM.search(line)):
                # The last address is the one that answered.
                found.append(match.group(1).split(", ")[-1])
        return found


@pytest.fixture(scope="module")
def site(single_node_swarm, images, run_prefix, report_figure):
    """The stack, deployed from nothing; the time to its first 200 is reported."""
    name = f"s{run_prefix}"
    port = free_port()
    env = site_environment(
        SIGNUP_REGISTRY=images,
        SIGNUP_VERSION=FIRST_VERSION,
        SIGNUP_PORT=port,
        SIGNUP_SECRET_PREFIX=name,
        SIGNUP_WEB_REPLICAS=TEST_REPLICAS,
        DJANGO_PUBLIC_URL=f"http://localhost:{port}",
        **TEST_SETTINGS,
    )
    env.pop("DJANGO_SETTINGS_MODULE")
    secret_values = {
        "django_secret_key": secrets.token_urlsafe(50),
        "postgres_password": secrets.token_urlsafe(24),
    }
    stack = Stack(name, env, files=swarm.stack_files())
    site = SwarmSite(stack, port, secret_values)
    try:
        for key, value in secret_values.items():
            site.create_secret(f"{name}_{key}", value)
        started = time.monotonic()
        stack.deploy()
        site.first_200()
        report_figure(
            f"swarm: stack deploy to first 200: {time.monotonic() - started:.1f} s"
        )
        yield site
    finally:
        stack.print_logs("web", "nginx", "db", "mailer")
        try:
            stack.remove()
            # The one command that removes the data; this run made the volume.
            stack.remove_volume("pgdata")
        finally:
            for secret in site.secrets_made:
                engine.docker("secret", "rm", secret, check=False)


@pytest.fixture(scope="module")
def admin(site):
    """`bootstrap` run in a web task with the admin's settings, as
    docs/swarm.md says for a script (the credentials never enter the stack)."""
    (task, *_) = site.stack.running_tasks("web")
    result = engine.docker(
        "exec",
        *("-e", f"DJANGO_SUPERUSER_USERNAME={ADMIN_USER}"),
        *("-e", "DJANGO_SUPERUSER_EMAIL=owner@example.com"),
        *("-e", f"DJANGO_SUPERUSER_PASSWORD={ADMIN_PASSWORD}"),
        site.stack.container(task),
        *("python", "manage.py", "bootstrap"),
    )
    assert f'admin account "{ADMIN_USER}" created' in result.stdout
    return ADMIN_USER


def admin_logs_in(base):
    return admin_session(base) is not None


def admin_session(base):
    """A session logged into the admin, or None."""
    session = requests.Session()
    page = session.get(base + "/admin/login/", timeout=10)
    token = traffic.TOKEN.search(page.text).group(1)
    response = session.post(
        base + "/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": token,
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "next": "/admin/",
        },
        headers={"Origin": base, "Referer": base + "/admin/login/"},
        allow_redirects=False,
        timeout=10,
    )
    if response.status_code != 302 or response.headers["Location"] != "/admin/":
        return None
    return session if in_the_admin(session, base) else None


def in_the_admin(session, base):
    index = session.get(base + "/admin/", timeout=10, allow_redirects=False)
    return index.status_code == 200 and "Site administration" in index.text


def test_deployed_from_nothing_a_signup_is_stored_and_the_admin_logs_in(
    site, admin, images
):
    email = f"swarm-{uuid.uuid4().hex[:8]}@example.com"

    confirmed, outcomes = traffic.signup(site.base, email, name="Swarm Deploy")

    assert confirmed, outcomes
    assert (
        site.stack.sql(f"SELECT name FROM accounts_signup WHERE email = '{email}'")
        == "Swarm Deploy"
    )
    assert admin_logs_in(site.base)
    # What runs was pulled from the registry, by digest.
    for short in ("web", "nginx", "db"):
        (task, *_) = site.stack.running_tasks(short)
        image = task["Spec"]["ContainerSpec"]["Image"]
        assert image.startswith(images + "/"), image
        assert "@sha256:" in image, image


def test_only_nginx_publishes_a_port_in_host_mode(site):
    published = {}
    for short in ("db", "web", "mailer", "nginx"):
        published[short] = [
            (port["PublishMode"], port["TargetPort"], port["PublishedPort"])
            for port in docker_json("service", "inspect", site.stack.service(short))[0][
                "Endpoint"
            ].get("Ports", [])
        ]

    assert published == {
        "db": [],
        "web": [],
        "mailer": [],
        "nginx": [("host", 8080, site.port)],
    }


def test_each_service_gets_only_its_secrets_and_no_secret_is_in_its_spec(site):
    names = {}
    for short in ("db", "web", "mailer", "nginx"):
        service = docker_json("service", "inspect", site.stack.service(short))
        spec = service[0]["Spec"]["TaskTemplate"]["ContainerSpec"]
        names[short] = sorted(s["File"]["Name"] for s in spec.get("Secrets", []))
        environment = "\n".join(spec.get("Env", []))
        for value in site.secret_values.values():
            assert value not in environment

    assert names == {
        "db": ["postgres_password"],
        "web": ["django_secret_key", "postgres_password"],
        "mailer": ["django_secret_key", "postgres_password"],
        "nginx": [],
    }


def test_the_mailer_task_is_healthy_and_idles_without_mail(site):
    """Deployed without deploy/swarm/mail.yaml: no mail configured, so the
    mailer sends nothing, and its heartbeat healthcheck passes (Swarm counts
    a task as running once it is healthy)."""
    (task,) = site.stack.wait_converged("mailer", 1, timeout=120)
    container = site.stack.container(task)
    health = engine.docker("inspect", "--format", "{{.State.Health.Status}}", container)
    logs = engine.docker("logs", container)

    assert health.stdout.strip() == "healthy"
    assert "No mail is configured" in logs.stdout + logs.stderr


def test_scaling_web_1_to_3_reaches_every_task_within_10_s_then_back_to_1(
    site, report_figure
):
    stack = site.stack
    stack.wait_converged("web", 1)
    asked = time.monotonic()
    stack.scale("web", 3)
    tasks = stack.wait_converged("web", 3)
    healthy = time.monotonic()
    addresses = {stack.task_address(task, "frontend") for task in tasks}
    token = uuid.uuid4().hex

    def every_task_answered():
        requests.get(f"{site.base}/?probe={token}", timeout=10)
        return set(site.nginx_upstreams(token)) >= {f"{a}:8000" for a in addresses}

    wait_for(every_task_answered, timeout=10, interval=0.1, message="all 3 tasks")
    pickup = time.monotonic() - healthy
    report_figure(
        f"swarm: scale web 1 -> 3: healthy after {healthy - asked:.1f} s, "
        f"all three answering {pickup:.1f} s later"
    )

    with traffic.Traffic(site.base) as load:
        time.sleep(2)
        stack.scale("web", 1)
        stack.wait_converged("web", 1)
        time.sleep(6)  # longer than nginx's 5 s DNS cache
    assert load.outcomes
    assert not load.failures, load.summary()
    assert site.stack.emails_stored(load.confirmed) == set(load.confirmed)


def test_rolling_update_under_load_fails_no_request_and_loses_no_signup(
    site, images, report_figure
):
    stack = site.stack
    stack.scale("web", 2)
    stack.wait_converged("web", 2)
    new_image = f"{images}/web:{NEXT_VERSION}"

    with traffic.Traffic(site.base) as load:
        time.sleep(3)
        started = time.monotonic()
        stack.update_image("web", new_image)
        stack.wait_converged("web", 2, image=new_image, timeout=400)
        took = time.monotonic() - started
        time.sleep(6)

    report_figure(
        f"swarm: rolling update of 2 web tasks: {took:.1f} s; {load.summary()}"
    )
    assert stack.update_status("web").get("State") in ("updating", "completed")
    assert len(load.confirmed) >= 5, load.summary()
    assert not load.failures, load.failures[:5]
    assert site.stack.emails_stored(load.confirmed) == set(load.confirmed)


def test_update_to_an_image_that_cannot_start_rolls_back_while_serving(
    site, images, report_figure
):
    stack = site.stack
    good = stack.service_image("web")
    broken = f"{images}/web:{BROKEN_VERSION}"

    with traffic.Traffic(site.base) as load:
        started = time.monotonic()
        stack.update_image("web", broken)
        wait_for(
            lambda: stack.update_status("web").get("State", "").startswith("rollback"),
            timeout=300,
            interval=0.5,
            message="rollback started",
        )
        began = time.monotonic() - started
        wait_for(
            lambda: stack.update_status("web").get("State") == "rollback_completed",
            timeout=300,
            interval=0.5,
            message="rollback completed",
        )
        took = time.monotonic() - started

    report_figure(
        f"swarm: update to a broken image: rollback began after {began:.1f} s, "
        f"completed (its 30 s monitor included) after {took:.1f} s; {load.summary()}"
    )
    assert stack.service_image("web") == good
    running = stack.wait_converged("web", 2)
    assert all(t["Spec"]["ContainerSpec"]["Image"] == good for t in running)
    assert load.outcomes
    assert not load.failures, load.failures[:5]
    assert site.stack.emails_stored(load.confirmed) == set(load.confirmed)


def test_a_web_task_killed_by_pid_is_replaced_and_no_confirmed_signup_is_lost(
    site, report_figure
):
    stack = site.stack
    before = stack.wait_converged("web", 2)
    victim = before[0]
    pid = int(
        engine.docker(
            "inspect", "--format", "{{.State.Pid}}", stack.container(victim)
        ).stdout
    )

    with traffic.Traffic(site.base) as load:
        time.sleep(2)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        after = wait_for(
            lambda: (
                (tasks := stack.running_tasks("web"))
                and len(tasks) == 2
                and victim["ID"] not in {t["ID"] for t in tasks}
                and tasks
            ),
            timeout=180,
            message="a replacement web task",
        )
        replaced = time.monotonic() - killed
        time.sleep(3)

    report_figure(
        f"swarm: killed web task replaced (healthy) in {replaced:.1f} s; "
        f"{load.summary()}"
    )
    assert len(after) == 2
    stopped = stack.tasks("web", desired="shutdown")
    (old,) = [t for t in stopped if t["ID"] == victim["ID"]]
    assert old["Status"]["ContainerStatus"]["ExitCode"] == 128 + signal.SIGKILL
    assert load.confirmed, load.summary()
    assert site.stack.emails_stored(load.confirmed) == set(load.confirmed)


def test_an_nginx_update_is_a_short_gap_then_the_site_serves_again(site, report_figure):
    stack = site.stack
    (before,) = stack.running_tasks("nginx")

    with traffic.Traffic(site.base) as load:
        time.sleep(2)
        started = time.monotonic()
        stack.update("nginx", "--force")
        wait_for(
            lambda: [
                t for t in stack.running_tasks("nginx") if t["ID"] != before["ID"]
            ],
            timeout=120,
            message="a new nginx task",
        )
        site.first_200(timeout=60)
        took = time.monotonic() - started
        time.sleep(2)

    failed = load.failures
    answered = sorted(o.at for o in load.outcomes if o.ok)
    gap = max(later - earlier for earlier, later in itertools.pairwise(answered))
    report_figure(
        f"swarm: nginx replaced (stop-first) in {took:.1f} s; no answer for "
        f"{gap:.1f} s; {load.summary()}"
    )
    # Refused or dropped connections while no nginx listens; no error page.
    assert all(o.status is None for o in failed), failed[:5]
    assert load.outcomes[-1].ok
    assert site.stack.emails_stored(load.confirmed) == set(load.confirmed)


def test_a_new_secret_key_loses_no_signup_and_keeps_admin_sessions(
    site, admin, report_figure
):
    """docs/swarm.md's change of key, step by step, under load: the new key
    first as every task's fallback, then as the key with the old one as the
    fallback. No sign-up is lost while the tasks roll, a form drawn before
    is still stored after, and the admin stays logged in."""
    stack = site.stack
    prefix = stack.name
    owner = admin_session(site.base)
    assert owner is not None
    browser = requests.Session()
    form = browser.get(site.base + "/", timeout=10)
    new_key = secrets.token_urlsafe(50)
    rotating = {**stack.env, "SIGNUP_WEB_REPLICAS": "2"}
    files = (*stack.files, KEY_ROTATION_FILE)

    def deploy_and_roll(suffix, key_secret, fallbacks_secret):
        Stack(
            stack.name, {**rotating, "SIGNUP_SECRET_KEY_SUFFIX": suffix}, files
        ).deploy()

        def rolled():
            tasks = stack.tasks("web") + stack.tasks("mailer")
            return len(tasks) == 3 and all(
                task["Status"]["State"] == "running"
                and {key_secret, fallbacks_secret}
                <= {s["SecretName"] for s in task["Spec"]["ContainerSpec"]["Secrets"]}
                for task in tasks
            )

        wait_for(rolled, timeout=300, interval=0.5, message=f"rolled to {key_secret}")
        # docs/swarm.md's loop: a replaced task serves while it stops.
        subprocess.run(
            ["sh", "-c", WAIT_FOR_REPLACED.replace("signup_", f"{prefix}_")],
            timeout=120,
            check=True,
        )

    def web_reads(path):
        """PATH in each running web task, if they all agree."""
        (found,) = {
            engine.docker("exec", stack.container(task), "cat", path).stdout
            for task in stack.running_tasks("web")
        }
        return found

    with traffic.Traffic(site.base) as load:
        time.sleep(3)
        started = time.monotonic()
        site.create_secret(f"{prefix}_django_secret_key_fallbacks", new_key + "\n")
        site.create_secret(f"{prefix}_django_secret_key_2", new_key + "\n")
        deploy_and_roll(
            "",
            f"{prefix}_django_secret_key",
            f"{prefix}_django_secret_key_fallbacks",
        )
        first = time.monotonic() - started
        # Every task now takes the new key's signatures before any makes one.
        signed_with_new = [
            f"swarm-key1-{n}-{uuid.uuid4().hex[:8]}@x.example" for n in range(6)
        ]
        for email in signed_with_new:
            page = browser.get(site.base + "/", timeout=10)
            posted = post_form(
                site.base,
                browser,
                page,
                email,
                token=issue_token(now=time.time() - 60, key=new_key),
            )
            assert posted.status_code == 302
        old_key = web_reads("/run/secrets/django_secret_key")
        site.create_secret(f"{prefix}_django_secret_key_fallbacks_2", old_key)
        deploy_and_roll(
            "_2",
            f"{prefix}_django_secret_key_2",
            f"{prefix}_django_secret_key_fallbacks_2",
        )
        took = time.monotonic() - started
        time.sleep(6)
    engine.docker(
        "secret",
        "rm",
        f"{prefix}_django_secret_key",
        f"{prefix}_django_secret_key_fallbacks",
    )
    # Later deploys keep the new key, as the docs' exported suffix does.
    stack.env = {**stack.env, "SIGNUP_SECRET_KEY_SUFFIX": "_2"}
    stack.files = files

    report_figure(
        f"swarm: change of secret key, two deploys: {first:.1f} s and "
        f"{took - first:.1f} s; {load.summary()}"
    )
    assert old_key.strip() == site.secret_values["django_secret_key"]
    assert web_reads("/run/secrets/django_secret_key").strip() == new_key
    assert web_reads("/run/secrets/django_secret_key_fallbacks").strip() == (
        old_key.strip()
    )
    assert len(load.confirmed) >= 5, load.summary()
    assert not load.failures, load.failures[:5]
    assert stack.emails_stored(load.confirmed) == set(load.confirmed)
    # Stored, where a refused token gets the same thank-you page and is
    # stored nowhere: forms signed with the new key after the first deploy,
    # and a form drawn under the old key before it all.
    assert stack.emails_stored(signed_with_new) == set(signed_with_new)
    email = f"swarm-key-{uuid.uuid4().hex[:8]}@example.com"
    posted = post_form(site.base, browser, form, email)
    assert (posted.status_code, posted.headers.get("Location")) == (302, "/thanks/")
    assert stack.emails_stored([email]) == {email}
    assert in_the_admin(owner, site.base)


def post_form(base, session, page, email, *, token=None):
    """The sign-up form of PAGE, sent with SESSION: its own token, or TOKEN."""
    return session.post(
        base + "/",
        data={
            "csrfmiddlewaretoken": traffic.TOKEN.search(page.text).group(1),
            "signup_token": token or traffic.FORM_TOKEN.search(page.text).group(1),
            "name": "Swarm Key Change",
            "email": email,
        },
        headers={"Origin": base, "Referer": base + "/"},
        allow_redirects=False,
        timeout=10,
    )


def test_stack_rm_then_deploy_again_keeps_the_data_and_the_volume(site, admin):
    stack = site.stack
    email = f"swarm-keep-{uuid.uuid4().hex[:8]}@example.com"
    confirmed, outcomes = traffic.signup(site.base, email)
    assert confirmed, outcomes
    count = stack.sql("SELECT count(*) FROM accounts_signup")

    stack.remove()
    volume = f"{stack.name}_pgdata"
    assert engine.docker("volume", "inspect", volume, check=False).returncode == 0
    stack.deploy()
    site.first_200()

    assert stack.sql("SELECT count(*) FROM accounts_signup") == count
    assert site.stack.emails_stored([email]) == {email}
    assert admin_logs_in(site.base)
