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
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.postgres import ThrowawayCluster
from tests.support.stack import ServingStack, form_token, wait_for

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
        static = stack.get("/static/accounts/site.css")
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
