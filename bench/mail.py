"""The mailer under load: one ``manage.py deliver_mail`` process, as the
``mailer`` service runs it, sending to a mail server on loopback
(bench/smtp_sink.py) that accepts every mail and notes when.

- backlog: a queue of many confirmation mails, sent by the one mailer; mails
  per second from their queueing to the last one accepted, and what each
  mail cost the mailer, PostgreSQL and the mail server in CPU.
- steady: sign-ups POSTed through nginx at a steady rate to a target with
  double opt-in on, the mailer running; the time from each sign-up
  (signed_up_at, the database's clock, this machine's) to its mail accepted.

Both check that every mail arrived exactly once."""

import contextlib
import math
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import uuid4

import requests

from loopback.processes import (
    PROJECT_ROOT,
    LogFile,
    free_port,
    stop_process,
    tree_cpu_seconds,
    wait_for,
)

SENDER = "Sign-ups <signup@example.com>"
# The backlog's sign-ups are dated this far apart, as the site queues mail
# when it takes about a thousand sign-ups a second with no mailer running
# (the load phases' rate); each mail has its own due_at, as a real backlog.
BACKLOG_SPACING_MS = 1
# Sign-ups and mail made by the benchmark's phases, apart from the site's.
BACKLOG_SQL = """
WITH signup AS (
    INSERT INTO accounts_signup (name, email, status, signed_up_at, last_mailed_at)
    SELECT 'Ada Lovelace', 'backlog.' || %(tag)s || '.' || i || '@example.com',
        'pending', at, at
    FROM (
        SELECT i, now() - (%(count)s - i) * %(spacing)s * interval '1 ms' AS at
        FROM generate_series(1, %(count)s) AS i
    ) AS due
    RETURNING id, signed_up_at
)
INSERT INTO accounts_outgoingmail (signup_id, kind, created_at, due_at)
SELECT id, 'confirm', signed_up_at, signed_up_at FROM signup
"""
SENT_SQL = """
SELECT m.status, count(*), max(m.attempts)
FROM accounts_outgoingmail AS m JOIN accounts_signup AS s ON s.id = m.signup_id
WHERE s.email LIKE %s GROUP BY m.status
"""


class SmtpSink:
    """bench/smtp_sink.py on a free loopback port; ``arrived()`` reads the
    mail it accepted since it was last asked."""

    def __init__(self, workdir):
        self.port = free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.log = Path(workdir) / "smtp-accepted.log"
        self.stderr = LogFile(Path(workdir) / "smtp-sink.stderr")
        self.process = None
        self.offset = 0
        # (accepted at, recipient) of every mail, in the order accepted.
        self.mail = []

    def start(self):
        self.log.touch()
        with self.stderr.path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.smtp_sink", str(self.port), self.log],
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        if self.process.stdout.readline().strip() != "listening":
            self.process.kill()
            raise RuntimeError(f"the SMTP sink did not start:\n{self.stderr.tail()}")
        return self

    def stop(self):
        stop_process(self.process)

    def cpu_seconds(self):
        return tree_cpu_seconds(self.process.pid)

    def new_mail(self):
        """The mail accepted since the last call, as (accepted at, recipient),
        reading only what is new: the benchmark asks often while the mailer
        works, on the same two cores."""
        with self.log.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        # A line still being written waits for the next call.
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        new = []
        for line in complete.decode().splitlines():
            accepted, recipients = line.split(" ", 1)
            new += [(float(accepted), rcpt.lower()) for rcpt in recipients.split()]
        self.mail += new
        return new

    def received(self, marker):
        """{recipient: [accepted at, ...]} of all the mail so far to addresses
        with MARKER."""
        self.new_mail()
        return collect(self.mail, marker)


def collect(mail, marker, found=None):
    """FOUND (or a new dict) with the MAIL to addresses with MARKER added."""
    found = {} if found is None else found
    for accepted, rcpt in mail:
        if marker in rcpt:
            found.setdefault(rcpt, []).append(accepted)
    return found


class Mailer:
    """``manage.py deliver_mail`` with TARGET's settings: its database, its
    secret key and its EMAIL_URL (the sink)."""

    def __init__(self, target, workdir):
        self.env = target.env | {"MAILER_HEARTBEAT_FILE": str(workdir / "heartbeat")}
        self.root = target.spec.root or PROJECT_ROOT
        self.log = LogFile(workdir / "mailer.stderr")
        self.process = None

    def start(self):
        with self.log.path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "deliver_mail"],
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"the mailer exited:\n{self.log.tail()}")
            return self.log.matching("Mailer sending through")

        wait_for(ready, timeout=60, message="the mailer started")
        return self

    def cpu_seconds(self):
        return tree_cpu_seconds(self.process.pid)

    def stop(self):
        """SIGTERM, as the mailer service is stopped: it finishes the mail in
        hand and exits 0."""
        return stop_process(self.process, signal.SIGTERM, timeout=30)


def percentiles(values, prefix, scale=1.0):
    """p50, p95, p99 (nearest rank) and max of VALUES times SCALE, keyed
    PREFIX_p50 and so on; None without values."""
    keys = [f"{prefix}_{name}" for name in ("p50", "p95", "p99", "max")]
    if not values:
        return dict.fromkeys(keys)
    ordered = sorted(value * scale for value in values)
    ranks = [math.ceil(q / 100 * len(ordered)) - 1 for q in (50, 95, 99, 100)]
    return {key: ordered[rank] for key, rank in zip(keys, ranks, strict=True)}


def outbox(database, marker):
    """{status: (mails, most attempts)} of the mail to addresses with MARKER."""
    with database.connect() as conn:
        rows = conn.execute(SENT_SQL, (f"%{marker}%",)).fetchall()
    return {status: {"mails": count, "attempts": most} for status, count, most in rows}


def cpu(mailer, sink, database):
    return {
        "mailer": mailer.cpu_seconds(),
        "smtp": sink.cpu_seconds(),
        "postgres": database.cpu_seconds(),
    }


def wait_for_mail(sink, marker, count, timeout):
    """Until COUNT mails to addresses with MARKER have arrived, or TIMEOUT
    seconds pass without a new one; what arrived."""
    last, seen = time.monotonic(), 0
    found = sink.received(marker)
    while True:
        collect(sink.new_mail(), marker, found)
        arrived = sum(map(len, found.values()))
        if arrived >= count:
            return found
        if arrived > seen:
            last, seen = time.monotonic(), arrived
        elif time.monotonic() - last > timeout:
            return found
        time.sleep(0.25)


def once_each(found, expected):
    """How many of EXPECTED addresses got no mail, and how many mails went
    to an address that had one already."""
    return {
        "missing": sum(1 for address in expected if address not in found),
        "twice": sum(len(times) - 1 for times in found.values()),
    }


def backlog(stack, sink, mailer, count):
    """COUNT confirmation mails queued in one transaction while the mailer
    idles; the time until the mail server has accepted the last."""
    marker = f"backlog.{uuid4().hex[:12]}."
    tag = marker.split(".")[1]
    with stack.database.connect(autocommit=True) as conn:
        conn.execute(
            BACKLOG_SQL, {"tag": tag, "count": count, "spacing": BACKLOG_SPACING_MS}
        )
    queued = time.time()
    # From here: PostgreSQL's work to queue the backlog is not the mailer's.
    before = cpu(mailer, sink, stack.database)
    found = wait_for_mail(sink, marker, count, timeout=30)
    after = cpu(mailer, sink, stack.database)
    times = sorted(t for accepted in found.values() for t in accepted)
    expected = [f"{marker}{i}@example.com" for i in range(1, count + 1)]
    result = {"mails": count, "accepted": len(times), **once_each(found, expected)}
    result |= {"marker": marker, "expected": expected}
    result["outbox"] = outbox(stack.database, marker)
    if not times:
        return result | {"mails_per_s": 0.0}
    wall = times[-1] - queued
    result |= {
        # From the commit that queued them: the mailer's idle poll included.
        "wall_s": wall,
        "mails_per_s": len(times) / wall,
        "first_after_s": times[0] - queued,
        # From the first mail accepted to the last: the sending alone.
        "sending_per_s": (len(times) - 1) / (times[-1] - times[0])
        if len(times) > 1
        else None,
    }
    for part, seconds in before.items():
        used = after[part] - seconds
        result[f"{part}_cpu_ms"] = used * 1000 / len(times)
        result[f"{part}_cpu_share"] = used / wall
    return result


class SteadySignups:
    """Sign-up POSTs through nginx to TARGET, RATE a second for DURATION
    seconds, each sent at its time whether or not the one before was
    answered (an open loop, as independent visitors)."""

    def __init__(self, target, marker, rate, duration):
        self.target = target
        self.marker = marker
        self.rate, self.count = rate, max(1, round(rate * duration))
        cookie, token, form_token, _tag = target.signup_args()
        self.body = (
            f"csrfmiddlewaretoken={token}&signup_token={form_token}"
            "&name=Ada+Lovelace&email={email}"
        )
        self.headers = {
            "Host": target.host,
            "Origin": f"http://{target.host}",
            "Cookie": f"csrftoken={cookie}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        self.sessions = threading.local()
        # number -> (sent at, seconds to the answer, status)
        self.answers = {}

    def address(self, number):
        return f"{self.marker}{number}@example.com"

    def post(self, number):
        session = getattr(self.sessions, "session", None)
        if session is None:
            session = self.sessions.session = requests.Session()
        body = self.body.format(email=self.address(number).replace("@", "%40"))
        sent = time.time()
        try:
            response = session.post(
                self.target.url + "/",
                data=body,
                headers=self.headers,
                allow_redirects=False,
                timeout=30,
            )
            status = response.status_code
        except requests.RequestException as error:
            status = type(error).__name__
        self.answers[number] = (sent, time.time() - sent, status)

    def run(self):
        start = time.monotonic() + 0.1
        with ThreadPoolExecutor(max_workers=8) as pool:
            for number in range(self.count):
                delay = start + number / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(self.post, number)
        return self.answers


def steady(stack, target, sink, mailer, rate, duration):
    """Sign-ups at RATE a second for DURATION seconds, the mailer running: the
    time from each stored sign-up to its mail accepted by the mail server."""
    marker = f"steady.{uuid4().hex[:12]}."
    load = SteadySignups(target, marker, rate, duration)
    before = cpu(mailer, sink, stack.database)
    started = time.monotonic()
    answers = load.run()
    load_wall = time.monotonic() - started
    with stack.database.connect() as conn:
        stored = dict(
            conn.execute(
                "SELECT lower(email), extract(epoch FROM signed_up_at)::float8 "
                "FROM accounts_signup WHERE email LIKE %s",
                (f"{marker}%",),
            ).fetchall()
        )
    found = wait_for_mail(sink, marker, len(stored), timeout=30)
    after = cpu(mailer, sink, stack.database)
    statuses = Counter(str(status) for _sent, _took, status in answers.values())
    latency, from_post = [], []
    for number, (sent, _took, _status) in answers.items():
        address = load.address(number)
        if address in found and address in stored:
            latency.append(found[address][0] - stored[address])
            from_post.append(found[address][0] - sent)
    wall = time.monotonic() - started
    result = {
        "marker": marker,
        "expected": list(stored),
        "rate": rate,
        "duration_s": duration,
        "signups": load.count,
        "load_wall_s": load_wall,
        "statuses": dict(sorted(statuses.items())),
        "errors": load.count - statuses["302"],
        "stored": len(stored),
        "accepted": sum(map(len, found.values())),
        **once_each(found, stored),
        **percentiles([took for _s, took, _st in answers.values()], "post_ms", 1000),
        **percentiles(latency, "latency_s"),
        **percentiles(from_post, "from_post_s"),
        "outbox": outbox(stack.database, marker),
        "mailer_cpu_share": (after["mailer"] - before["mailer"]) / wall,
    }
    return result


def run(stack, target, options):
    """Both phases with one mailer for TARGET (double opt-in on), started
    once the load phases' queued mail is discarded: no mailer ran during
    them, and their tens of thousands of mails are not what is measured."""
    workdir = stack.root / "mailer"
    workdir.mkdir()
    with stack.database.connect(autocommit=True) as conn:
        conn.execute("TRUNCATE accounts_outgoingmail")
    results = {"target": target.name, "settings": {"spacing_ms": BACKLOG_SPACING_MS}}
    with contextlib.ExitStack() as running:
        mailer = Mailer(target, workdir).start()
        running.callback(mailer.stop)
        print(f"mailer: a backlog of {options.mail_backlog:,} mails")
        results["backlog"] = backlog(stack, stack.smtp, mailer, options.mail_backlog)
        print(
            f"mailer: sign-ups at {options.mail_rate}/s for "
            f"{options.mail_duration} s, the mailer running"
        )
        results["steady"] = steady(
            stack,
            target,
            stack.smtp,
            mailer,
            options.mail_rate,
            options.mail_duration,
        )
        results["mailer_exit"] = mailer.stop()
    # Once more with the mailer stopped: a mail sent twice, late, counts too.
    for phase in ("backlog", "steady"):
        figures = results[phase]
        found = stack.smtp.received(figures.pop("marker"))
        figures |= once_each(found, figures.pop("expected"))
        figures["accepted"] = sum(map(len, found.values()))
    results["mailer_log"] = {
        "sent": len(mailer.log.matching("Sent mail")),
        "deferred": len(mailer.log.matching("deferred")),
        "failed": len(mailer.log.matching("failed for good")),
    }
    return results


def lost(results):
    """What went wrong in RESULTS' mail phases, if anything: the benchmark
    fails on it, as on a lost sign-up."""
    problems = []
    for phase in ("backlog", "steady"):
        figures = results[phase]
        expected = figures["stored"] if phase == "steady" else figures["mails"]
        if figures["missing"] or figures["twice"] or figures["accepted"] != expected:
            problems.append(f"{phase}: {figures['accepted']} of {expected} accepted")
    if results["steady"]["errors"]:
        problems.append(f"steady: sign-ups answered {results['steady']['statuses']}")
    if results["mailer_exit"] != 0:
        problems.append(f"the mailer exited with {results['mailer_exit']}")
    return problems
