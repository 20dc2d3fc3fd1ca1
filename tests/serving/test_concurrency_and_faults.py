"""
Load, races and faults through nginx: simultaneous sign-ups, a database that
stops and restarts under a stream of sign-ups, and gunicorn draining its
requests on SIGTERM. Every client that saw the thank-you page has its row.
"""

import re
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import requests

from loopback.browser import form_token
from loopback.postgres import ThrowawayCluster
from loopback.processes import wait_for
from tests.support.commands import PROJECT_ROOT, manage, start_manage
from tests.support.stack import ServingStack, nginx_seconds

# The site's settings plus an app whose migration alters the sign-up table.
MIGRATING_SETTINGS = "tests.serving.migrating_settings"

REQUEST_ID = re.compile(r"rid=([0-9a-f]{32})")


@pytest.fixture(scope="module")
def three_worker_stack(nginx_binary):
    from django.conf import settings

    stack = ServingStack(settings.DATABASES["default"], WEB_CONCURRENCY="3").start()
    yield stack
    stack.stop()


def mixed_case(email, index):
    local, domain = email.split("@")
    flips = [c.upper() if (index >> (i % 6)) & 1 else c for i, c in enumerate(local)]
    return "".join(flips) + "@" + (domain.upper() if index % 2 else domain)


def test_fifty_parallel_signups_of_one_address_give_one_row(three_worker_stack):
    stack = three_worker_stack
    email = f"race-{uuid.uuid4().hex[:8]}@example.com"
    pair = stack.csrf_pair()

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(
            pool.map(
                lambda i: stack.sign_up(f"Racer {i}", mixed_case(email, i), pair=pair),
                range(50),
            )
        )

    assert [r.status_code for r in responses] == [302] * 50
    assert {r.headers["Location"] for r in responses} == {"/thanks/"}
    assert len(stack.signups(email)) == 1
    # The requests were spread over the three workers, and each left exactly
    # one line in nginx's and in gunicorn's log, joined by the request id.
    ids = [r.headers["X-Request-ID"] for r in responses]
    gunicorn_lines = [stack.gunicorn.access_log.wait_for_line(f"rid={i} ") for i in ids]
    pids = {re.search(r" pid=<?(\d+)>? ", line).group(1) for line in gunicorn_lines}
    assert len(pids) == 3, pids
    for request_id, line in zip(ids, gunicorn_lines, strict=True):
        assert line.startswith("127.0.0.1 ")
        assert len(stack.gunicorn.access_log.matching(f"rid={request_id} ")) == 1
        nginx_lines = stack.nginx.access_log.matching(f"rid={request_id}")
        assert len(nginx_lines) == 1
        assert nginx_lines[0].startswith("127.0.0.1 ")
    assert not stack.gunicorn.error_log.matching("Traceback")


def test_a_thousand_distinct_signups_at_twenty_at_a_time(three_worker_stack):
    stack = three_worker_stack
    batch = uuid.uuid4().hex[:8]
    pair = stack.csrf_pair()
    before = stack.signup_count()

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(
            pool.map(
                lambda i: (
                    stack.sign_up(
                        f"Person {i}", f"p{i}-{batch}@example.com", pair=pair
                    ).status_code
                ),
                range(1000),
            )
        )

    assert statuses == [302] * 1000
    assert stack.signup_count() - before == 1000


@pytest.fixture(scope="module")
def cluster_stack(nginx_binary):
    """The stack on a private PostgreSQL server that the tests stop and start."""
    cluster = ThrowawayCluster()
    cluster.start()
    stack = ServingStack(
        {
            "HOST": "127.0.0.1",
            "PORT": cluster.port,
            "USER": cluster.superuser,
            "PASSWORD": cluster.superuser_password,
        },
        WEB_CONCURRENCY="3",
    )
    try:
        stack.start()
        yield stack, cluster
    finally:
        if not cluster.is_running():
            cluster.start()
        stack.stop()
        cluster.destroy()


def test_database_stopped_gives_a_quick_503_and_recovers_without_restarts(
    cluster_stack,
):
    stack, cluster = cluster_stack
    pair = stack.csrf_pair()
    cluster.stop()
    try:
        started = time.monotonic()
        response = stack.sign_up("Outage", "outage@example.com", pair=pair)
        elapsed = time.monotonic() - started
        static = stack.get("/static/site/site.css")
        form = stack.get("/")
    finally:
        cluster.start()

    assert response.status_code == 503
    assert elapsed < 4, elapsed
    assert response.headers["Retry-After"] == "10"
    assert "<h1>Back in a moment</h1>" in response.text
    assert static.status_code == 200
    assert form.status_code == 200  # the form itself needs no database
    # The database is back: the very next sign-up works, nothing restarted.
    again = stack.sign_up("Recovered", "recovered@example.com", pair=pair)
    assert again.status_code == 302
    assert stack.signups("recovered@example.com") == [
        ("Recovered", "recovered@example.com")
    ]
    assert stack.signups("outage@example.com") == []
    assert stack.gunicorn.error_log.matching("database unavailable during POST /")
    assert not stack.gunicorn.error_log.matching("Traceback")


def test_database_restart_under_a_stream_of_signups_loses_no_confirmed_one(
    cluster_stack,
):
    stack, cluster = cluster_stack
    pair = stack.csrf_pair()
    outcomes = []
    stop = threading.Event()

    def client(number):
        sent = 0
        while not stop.is_set() and sent < 400:
            email = f"stream-{number}-{sent}-{uuid.uuid4().hex[:6]}@example.com"
            status = stack.sign_up(f"Stream {number}", email, pair=pair).status_code
            outcomes.append((email, status))
            sent += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    cluster.stop()
    time.sleep(1)
    cluster.start()
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    statuses = {status for _, status in outcomes}
    assert statuses <= {302, 503}, statuses
    assert 302 in statuses
    assert 503 in statuses, "the restart was not noticed: the test proves nothing"
    with stack.connect() as conn:
        stored = dict(
            conn.execute(
                "SELECT email, name FROM accounts_signup WHERE email LIKE 'stream-%'"
            ).fetchall()
        )
    for email, status in outcomes:
        if status == 302:
            assert email in stored, f"confirmed sign-up lost: {email}"
        if email in stored:
            assert stored[email].startswith("Stream "), "a half-written row"
    assert not stack.gunicorn.error_log.matching("Traceback")


SIGNUPS_PER_SECOND = 5
# The longest a visitor waits: nginx's proxy_read_timeout, and a moment.
ANSWER_BOUND = nginx_seconds("proxy_read_timeout") + 1.5


@dataclass
class Attempt:
    email: str
    sent: float  # time.monotonic() when sent
    seconds: float  # until answered, or until it failed
    outcome: requests.Response | Exception

    @property
    def status(self):
        return getattr(self.outcome, "status_code", None)


def signup_stream(stack, *, seconds, label):
    """Sign-ups at SIGNUPS_PER_SECOND for SECONDS, each a new address, sent on
    schedule whether or not earlier ones were answered (visitors do not wait
    for each other). Returns the attempts in the order they were sent."""
    pair = stack.csrf_pair()
    attempts = [None] * (seconds * SIGNUPS_PER_SECOND)

    def one(number):
        email = f"{label}-{number}-{uuid.uuid4().hex[:6]}@example.com"
        sent = time.monotonic()
        try:
            outcome = stack.sign_up(f"{label} {number}", email, pair=pair, timeout=60)
        except Exception as exc:  # a hang or a reset is a result too
            outcome = exc
        attempts[number] = Attempt(email, sent, time.monotonic() - sent, outcome)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=150) as pool:
        for number in range(len(attempts)):
            time.sleep(max(0, start + number / SIGNUPS_PER_SECOND - time.monotonic()))
            pool.submit(one, number)
    return attempts


def assert_each_visitor_saw_the_truth(stack, attempts):
    """Thank-you means a row; an error is the branded page with Retry-After
    (the site's 503, or nginx's 504 for a wait in gunicorn's queue) and at most
    one complete row, since a sign-up sent again is harmless; every answer came
    within ANSWER_BOUND; no worker was killed."""
    time.sleep(1)  # what was still queued when nginx gave up has run by now
    slowest = max(attempt.seconds for attempt in attempts)
    counts = Counter(attempt.status for attempt in attempts)
    print(f"{len(attempts)} sign-ups: {counts}, slowest {slowest:.2f} s")
    problems = []
    for attempt in attempts:
        email, outcome, seconds = attempt.email, attempt.outcome, attempt.seconds
        if isinstance(outcome, Exception):
            problems.append(f"{email}: {outcome!r} after {seconds:.1f} s")
            continue
        rows = stack.signups(email)
        if seconds > ANSWER_BOUND:
            problems.append(f"{email}: {outcome.status_code} after {seconds:.1f} s")
        if any(not name.startswith(email.split("-")[0]) for name, _ in rows):
            problems.append(f"{email}: a half-written row {rows}")
        if outcome.status_code == 302 and outcome.headers["Location"] == "/thanks/":
            if len(rows) != 1:
                problems.append(f"{email}: thanked, but {len(rows)} rows")
        elif outcome.status_code in (503, 504):
            if outcome.headers.get("Retry-After") != "10":
                problems.append(f"{email}: {outcome.status_code} without Retry-After")
            if "<h1>Back in a moment</h1>" not in outcome.text:
                problems.append(f"{email}: {outcome.status_code} without the page")
            if len(rows) > 1:
                problems.append(f"{email}: shown an error, and {len(rows)} rows")
        else:
            problems.append(f"{email}: answered {outcome.status_code}")
    assert not problems, "\n".join(problems[:20]) + f"\n({len(problems)} in all)"
    assert not stack.gunicorn.error_log.matching("WORKER TIMEOUT")
    assert not stack.gunicorn.error_log.matching("Traceback")


def errors(attempts):
    return [attempt for attempt in attempts if attempt.status != 302]


def test_a_paused_database_gives_quick_503s_and_recovers(cluster_stack):
    """docker pause, played by SIGSTOP to every process of the server: its
    kernel still acknowledges TCP, so only the site's own clock ends a wait."""
    stack, cluster = cluster_stack
    stack.sign_up("Warm", f"warm-{uuid.uuid4().hex[:6]}@example.com")

    def pause():
        time.sleep(3)
        with cluster.frozen():
            time.sleep(30)

    pauser = threading.Thread(target=pause)
    pauser.start()
    attempts = signup_stream(stack, seconds=45, label="paused")
    pauser.join()

    assert_each_visitor_saw_the_truth(stack, attempts)
    assert len(errors(attempts)) >= 100, "the pause was not noticed"
    # Most answers come at once: a reused connection's health check finds the
    # frozen server in a second, and the worker stops asking for a while.
    quick = [a for a in errors(attempts) if a.seconds < 2]
    assert len(quick) >= 0.8 * len(errors(attempts)), len(quick)
    assert [a.status for a in attempts[-5:]] == [302] * 5, "not back after the pause"


@contextmanager
def table_locked(stack, mode, *, after, seconds):
    """A thread that locks the sign-up table in MODE for SECONDS, AFTER
    seconds from now; yields the (acquired, released) monotonic times, filled
    in once the block's body has run."""
    held = []

    def hold():
        time.sleep(after)
        with stack.connect() as conn:
            conn.execute(f"LOCK TABLE accounts_signup IN {mode} MODE")
            held.append(time.monotonic())
            time.sleep(seconds)
        held.append(time.monotonic())

    holder = threading.Thread(target=hold)
    holder.start()
    yield held
    holder.join()


def test_a_brief_table_lock_costs_no_sign_up(cluster_stack):
    """What an index build holds, or an ALTER TABLE waiting behind a read:
    sign-ups wait for it, and none is refused."""
    stack, _cluster = cluster_stack
    stack.sign_up("Warm", f"warm-{uuid.uuid4().hex[:6]}@example.com")

    with table_locked(stack, "SHARE ROW EXCLUSIVE", after=2, seconds=2.5):
        attempts = signup_stream(stack, seconds=8, label="brief")

    assert_each_visitor_saw_the_truth(stack, attempts)
    assert errors(attempts) == []
    assert max(a.seconds for a in attempts) > 2, "the lock was not felt"


@contextmanager
def container_healthcheck(stack):
    """The web image's HEALTHCHECK, played against gunicorn: /readyz with the
    probe's timeout, `interval` after the previous probe ended. Yields the
    list of outcomes (True for 200) and the retries that make a container
    unhealthy (Swarm then replaces it)."""
    dockerfile = (PROJECT_ROOT / "docker" / "Dockerfile").read_text()
    check = re.search(
        r"HEALTHCHECK --interval=(\d+)s .*--retries=(\d+).*\n.*readyz.*timeout=(\d+)",
        dockerfile,
    )
    interval, retries, timeout = (int(value) for value in check.groups())
    outcomes = []
    stop = threading.Event()

    def probe():
        while not stop.wait(interval):
            url = f"http://127.0.0.1:{stack.gunicorn.port}/readyz"
            try:
                outcomes.append(requests.get(url, timeout=timeout).status_code == 200)
            except requests.RequestException:
                outcomes.append(False)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        yield outcomes, retries
    finally:
        stop.set()
        prober.join()


def longest_failing_run(outcomes):
    run = longest = 0
    for healthy in outcomes:
        run = 0 if healthy else run + 1
        longest = max(longest, run)
    return longest


@pytest.mark.parametrize("seconds", [15, 40])
def test_a_long_table_lock_refuses_sign_ups_only_while_it_is_held(
    cluster_stack, seconds
):
    """Longer than the site's lock timeout: sign-ups sent while the table is
    locked may get the 503 page, within the bound; none sent after it is
    released does, no worker is killed, and the container's healthcheck,
    whose probes wait behind the held workers, never calls it unhealthy."""
    stack, _cluster = cluster_stack
    stack.sign_up("Warm", f"warm-{uuid.uuid4().hex[:6]}@example.com")

    with (
        container_healthcheck(stack) as (probes, retries),
        table_locked(stack, "ACCESS EXCLUSIVE", after=2, seconds=seconds) as held,
    ):
        attempts = signup_stream(stack, seconds=seconds + 10, label="locked")

    assert_each_visitor_saw_the_truth(stack, attempts)
    print(f"healthcheck probes: {probes}")
    assert longest_failing_run(probes) < retries, probes
    acquired, released = held
    refused = errors(attempts)
    assert refused, "the lock was not noticed"
    # Sent a moment before the lock was taken, a sign-up can still meet it.
    assert all(acquired - 1 <= a.sent < released for a in refused), [
        (round(a.sent - acquired, 1), a.status) for a in refused
    ]
    after = [a for a in attempts if a.sent >= released]
    assert len(after) >= 30
    assert [a.status for a in after] == [302] * len(after)


@pytest.fixture
def migrating(cluster_stack):
    """The environment of a bootstrap that has the migration to apply; the
    migration is unapplied afterwards."""
    stack, _cluster = cluster_stack
    environment = {**stack.env, "DJANGO_SETTINGS_MODULE": MIGRATING_SETTINGS}
    yield environment
    manage("migrate", "migrating", "zero", env=environment, check=True)


def test_a_migration_behind_a_long_read_never_holds_sign_ups_up(
    cluster_stack, migrating
):
    """ALTER TABLE waits behind an open read, and every sign-up queues behind
    it: bootstrap's migrate waits 2 s at a time, steps back, and retries until
    the read ends."""
    stack, _cluster = cluster_stack
    reading = threading.Event()

    def long_read():
        with stack.connect() as conn:
            conn.execute("SELECT count(*) FROM accounts_signup")
            reading.set()
            time.sleep(12)
            conn.rollback()

    reader = threading.Thread(target=long_read)
    reader.start()
    assert reading.wait(timeout=10)
    migration = start_manage("bootstrap", "--lock-timeout", "2", env=migrating)
    attempts = signup_stream(stack, seconds=20, label="migrating")
    reader.join()
    _out, err = migration.communicate(timeout=60)

    assert migration.returncode == 0, err
    assert err.count("stepped back") >= 2, err
    assert_each_visitor_saw_the_truth(stack, attempts)
    assert errors(attempts) == []
    slowest = max(a.seconds for a in attempts)
    assert 1.5 < slowest < 4, f"slowest sign-up {slowest:.1f} s"
    with stack.connect() as conn:
        conn.execute("SELECT added_under_load FROM accounts_signup LIMIT 1")


def test_a_migration_that_never_gets_its_lock_gives_up_with_the_reason(
    cluster_stack, migrating
):
    stack, _cluster = cluster_stack
    with stack.connect() as conn:
        conn.execute("LOCK TABLE accounts_signup IN ACCESS SHARE MODE")
        result = manage(
            "bootstrap",
            "--lock-timeout",
            "0.5",
            "--migrate-timeout",
            "2",
            env=migrating,
        )
        conn.rollback()

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "CommandError: Migrations could not get their table locks within 2 s: "
        "another session holds them (see pg_stat_activity)."
    )
    assert "Traceback" not in result.stderr


def test_gunicorn_drains_an_in_flight_export_on_sigterm(cluster_stack):
    stack, _cluster = cluster_stack
    with stack.connect() as conn:
        conn.execute(
            "INSERT INTO accounts_signup (name, email) SELECT 'Bulk ' || n, "
            "'bulk-' || n || '@example.com' FROM generate_series(1, 150000) AS n"
        )
        total = conn.execute("SELECT count(*) FROM accounts_signup").fetchone()[0]
    session = stack.admin_session("drain", "drain passphrase 1")
    page = session.get(stack.nginx.url("/admin/accounts/signup/"), timeout=10)

    export = session.post(
        stack.nginx.url("/admin/accounts/signup/"),
        data={
            "csrfmiddlewaretoken": form_token(page.text),
            "action": "export_csv",
            "select_across": "1",
            "_selected_action": "1",
        },
        headers=stack.origin_headers(),
        stream=True,
        timeout=60,
    )
    assert export.status_code == 200
    chunks = export.iter_content(chunk_size=65536)
    first = next(chunks)
    stack.gunicorn.process.send_signal(signal.SIGTERM)
    body = first + b"".join(chunks)
    exit_code = stack.gunicorn.process.wait(timeout=40)
    stack.restart_gunicorn()

    assert exit_code == 0
    assert body.count(b"\n") == total + 1  # every row and the header arrived
    wait_for(lambda: stack.get("/").status_code == 200, timeout=10, message="back")
