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

import pytest

from loopback.browser import form_token
from loopback.postgres import ThrowawayCluster
from loopback.processes import wait_for
from tests.support.stack import ServingStack

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
# "A few seconds": the bound on every answer while the database hangs.
ANSWER_BOUND = 6.0


def signup_stream(stack, *, seconds, label):
    """Sign-ups at SIGNUPS_PER_SECOND for SECONDS, each a new address, sent on
    schedule whether or not earlier ones were answered (visitors do not wait
    for each other). Returns (email, response or exception, seconds taken)."""
    pair = stack.csrf_pair()
    results = []

    def one(number):
        email = f"{label}-{number}-{uuid.uuid4().hex[:6]}@example.com"
        started = time.monotonic()
        try:
            outcome = stack.sign_up(f"{label} {number}", email, pair=pair, timeout=60)
        except Exception as exc:  # a hang or a reset is a result too
            outcome = exc
        results.append((email, outcome, time.monotonic() - started))

    count = seconds * SIGNUPS_PER_SECOND
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=60) as pool:
        for number in range(count):
            time.sleep(max(0, start + number / SIGNUPS_PER_SECOND - time.monotonic()))
            pool.submit(one, number)
    return results


def assert_each_visitor_saw_the_truth(stack, results):
    """Thank-you means a row; an error is the branded 503 with Retry-After and
    no row; every answer came within ANSWER_BOUND; no worker was killed."""
    slowest = max(seconds for _, _, seconds in results)
    counts = Counter(statuses(results))
    print(f"{len(results)} sign-ups: {counts}, slowest {slowest:.2f} s")
    problems = []
    for email, outcome, seconds in results:
        if isinstance(outcome, Exception):
            problems.append(f"{email}: {outcome!r} after {seconds:.1f} s")
            continue
        rows = stack.signups(email)
        if seconds > ANSWER_BOUND:
            problems.append(f"{email}: {outcome.status_code} after {seconds:.1f} s")
        if outcome.status_code == 302 and outcome.headers["Location"] == "/thanks/":
            if len(rows) != 1:
                problems.append(f"{email}: thanked, but {len(rows)} rows")
        elif outcome.status_code == 503:
            if outcome.headers.get("Retry-After") != "10":
                problems.append(f"{email}: 503 without Retry-After")
            if "<h1>Back in a moment</h1>" not in outcome.text:
                problems.append(f"{email}: 503 without the site's page")
            if rows:
                problems.append(f"{email}: shown an error, yet stored")
        else:
            problems.append(f"{email}: answered {outcome.status_code}")
    assert not problems, "\n".join(problems[:20]) + f"\n({len(problems)} in all)"
    assert not stack.gunicorn.error_log.matching("WORKER TIMEOUT")
    assert not stack.gunicorn.error_log.matching("Traceback")


def statuses(results):
    return [getattr(outcome, "status_code", None) for _, outcome, _ in results]


def test_a_paused_database_gives_quick_503s_and_no_row_behind_an_error(
    cluster_stack,
):
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
    results = signup_stream(stack, seconds=45, label="paused")
    pauser.join()
    time.sleep(2)  # what the server still had in its sockets has run by now

    assert_each_visitor_saw_the_truth(stack, results)
    seen = statuses(results)
    assert seen.count(503) >= 100, "the pause was not noticed"
    assert seen[-5:] == [302] * 5, "not back after the pause"


def test_a_table_lock_held_for_40_s_gives_quick_503s(cluster_stack):
    """A migration or a hand-run LOCK TABLE: the server is alive and answers
    the site's lock_timeout with an error."""
    stack, _cluster = cluster_stack
    stack.sign_up("Warm", f"warm-{uuid.uuid4().hex[:6]}@example.com")

    def hold_lock():
        with stack.connect() as conn:
            conn.execute("LOCK TABLE accounts_signup IN ACCESS EXCLUSIVE MODE")
            time.sleep(40)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    results = signup_stream(stack, seconds=50, label="locked")
    holder.join()

    assert_each_visitor_saw_the_truth(stack, results)
    seen = statuses(results)
    assert seen.count(503) >= 150, "the lock was not noticed"
    assert seen[-5:] == [302] * 5, "not back after the lock"


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
