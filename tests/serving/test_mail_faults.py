"""
The mail path's faults on loopback, with double opt-in on: sign-ups through
nginx and gunicorn at a steady rate, a real SMTP server (aiosmtpd) that goes
down, refuses for now, refuses for good or answers slowly, and real mailers
(manage.py deliver_mail) stopped or killed by their pid. Each test counts the
sign-ups answered, the mails queued and sent, and the mails the server got
for each address: none lost, none twice but the one a killed mailer had in
hand, which comes again with the same Message-ID.
"""

import itertools
import signal
import smtplib
import statistics
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from accounts.outbox import FIRST_RETRY, MAX_PAUSE_SECONDS
from loopback.processes import wait_for
from tests.support.mailer import Mailer
from tests.support.smtp import ACCEPTED, SMTPServer
from tests.support.stack import ServingStack

SENDER = "Sign-ups <signup@example.com>"
# Sign-ups a second in every stream: a steady trickle, not a load test.
RATE = 5
# How long the mail server is down: a minute, as docs/testing.md says; the
# module stays under three minutes with it.
OUTAGE_SECONDS = 60
# After the server is back, the mailer's next try comes within its longest
# back-off; the backlog (300 mails) then goes out in seconds. Generous
# bounds: the speed of delivery is the benchmark's business.
BACK_WITHIN = MAX_PAUSE_SECONDS + 5
DRAINED_WITHIN = MAX_PAUSE_SECONDS + 45
# What the SMTP server answers when told to refuse: for now, then for good.
GREYLISTED = "450 4.2.0 Greylisted, try again later"
QUEUE_FULL = "451 4.3.0 Queue full, try again later"
UNKNOWN_USER = "550 5.1.1 Recipient address rejected: User unknown"
REJECTED = "554 5.7.1 Message rejected as spam"


@pytest.fixture(scope="module")
def smtp():
    with SMTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def mail_stack(nginx_binary, smtp):
    """nginx -> gunicorn -> PostgreSQL with double opt-in on, mailing
    through the module's SMTP server."""
    from django.conf import settings

    stack = ServingStack(
        settings.DATABASES["default"],
        SIGNUP_DOUBLE_OPT_IN="true",
        EMAIL_URL=smtp.url,
        DEFAULT_FROM_EMAIL=SENDER,
    ).start()
    yield stack
    stack.stop()


def smtp_send(server, recipient, *, timeout=5):
    """One mail to RECIPIENT through SERVER, as smtplib sends it."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=timeout) as client:
        client.sendmail(
            "signup@example.com",
            [recipient],
            f"Message-ID: <{recipient}>\r\nSubject: Test\r\n\r\nBody\r\n",
        )


def test_the_smtp_server_answers_as_told(smtp_server):
    """The stand-in the faults below rely on: refusals where and to whom
    they are asked for, and only accepted mail recorded."""
    smtp_server.refuse(QUEUE_FULL, recipients=["Later@example.com"])
    smtp_server.refuse(UNKNOWN_USER, at="RCPT", recipients=["gone@example.com"])
    smtp_send(smtp_server, "ok@example.com")
    with pytest.raises(smtplib.SMTPDataError) as later:
        smtp_send(smtp_server, "later@example.com")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as gone:
        smtp_send(smtp_server, "gone@example.com")
    smtp_server.accept()
    smtp_send(smtp_server, "later@example.com")

    assert (later.value.smtp_code, later.value.smtp_error) == (
        451,
        b"4.3.0 Queue full, try again later",
    )
    assert gone.value.recipients == {
        "gone@example.com": (550, b"5.1.1 Recipient address rejected: User unknown")
    }
    assert smtp_server.counts() == {"ok@example.com": 1, "later@example.com": 1}
    assert smtp_server.to("later@example.com")[0].message_id == "<later@example.com>"
    assert [a.code for a in smtp_server.answered("DATA")] == [250, 451, 250]


def test_the_smtp_server_goes_down_and_comes_back_on_its_port(smtp_server):
    client = smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=5)
    smtp_server.stop()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()
    with pytest.raises(ConnectionRefusedError):
        smtp_send(smtp_server, "down@example.com")
    smtp_server.start()
    smtp_send(smtp_server, "back@example.com")
    assert smtp_server.counts() == {"back@example.com": 1}


def test_a_mail_the_smtp_server_took_counts_if_the_client_leaves_before_250(
    smtp_server,
):
    """What makes a killed mailer's mail in hand arrive twice: the server has
    it, the client never heard so."""
    smtp_server.reply_delay = 5
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        smtp_send(smtp_server, "held@example.com", timeout=0.5)
    smtp_server.wait(lambda s: s.holding == 0, timeout=5, message="hold dropped")
    assert smtp_server.counts() == {"held@example.com": 1}
    assert smtp_server.answered("DATA") == []


@dataclass
class Attempt:
    email: str
    seconds: float  # until answered, or until it failed
    outcome: object  # a requests.Response or the exception

    @property
    def thanked(self):
        response = self.outcome
        return (
            getattr(response, "status_code", None) == 302
            and response.headers["Location"] == "/thanks/"
        )


class SignupStream:
    """Sign-ups through nginx at RATE a second from start() to stop(), each
    a new address, sent on schedule whether or not the earlier ones were
    answered (visitors do not wait for each other)."""

    def __init__(self, stack, label, rate=RATE):
        self.stack = stack
        self.label = f"{label}-{uuid.uuid4().hex[:6]}"
        self.rate = rate
        self.attempts = []
        self._stop = threading.Event()
        self._thread = None

    def address(self, number):
        return f"{self.label}-{number}@example.com"

    def start(self):
        self._thread = threading.Thread(target=self._run, name=self.label)
        self._thread.start()
        return self

    def _run(self):
        pair = self.stack.csrf_pair()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=20) as pool:
            number = 0
            while not self._stop.wait(
                max(0, started + number / self.rate - time.monotonic())
            ):
                pool.submit(self._one, self.address(number), pair)
                number += 1

    def _one(self, email, pair):
        sent = time.monotonic()
        try:
            outcome = self.stack.sign_up("Stream", email, pair=pair, timeout=30)
        except Exception as exc:  # a hang or a reset is an outcome too
            outcome = exc
        self.attempts.append(Attempt(email, time.monotonic() - sent, outcome))

    def stop(self):
        """Stop sending; return the attempts, each answered by now."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        return list(self.attempts)


@dataclass
class MailRow:
    id: int
    status: str
    attempts: int
    last_error: str


class MailPath:
    """The module's stack and SMTP server for one test, with the mailers and
    sign-up streams it starts, stopped by pid and joined at the end."""

    def __init__(self, stack, smtp, workdir):
        self.stack, self.smtp, self.workdir = stack, smtp, workdir
        self.mailers = []
        self.streams = []

    def mailer(self, name=None):
        """A mailer started, and ready to send."""
        name = name or f"mailer{len(self.mailers) + 1}"
        mailer = Mailer(self.workdir, self.stack.env, name=name)
        self.mailers.append(mailer)
        return mailer.start().wait_ready()

    def stream(self, label, rate=RATE):
        stream = SignupStream(self.stack, label, rate)
        self.streams.append(stream)
        return stream

    def outbox(self):
        """Each address's outbox rows (address lower-cased)."""
        with self.stack.connect() as conn:
            rows = conn.execute(
                "SELECT lower(s.email), m.id, m.status, m.attempts, m.last_error"
                " FROM accounts_outgoingmail AS m"
                " JOIN accounts_signup AS s ON s.id = m.signup_id ORDER BY m.id"
            ).fetchall()
        mails = {}
        for email, *row in rows:
            mails.setdefault(email, []).append(MailRow(*row))
        return mails

    def queued(self):
        with self.stack.connect() as conn:
            return conn.execute(
                "SELECT count(*) FROM accounts_outgoingmail WHERE status = 'queued'"
            ).fetchone()[0]

    def wait_until_sent(self, timeout):
        """Until no mail is queued; the seconds that took."""
        started = time.monotonic()
        wait_for(
            lambda: self.queued() == 0,
            timeout=timeout,
            interval=0.2,
            message="every queued mail sent",
        )
        return time.monotonic() - started

    def close(self):
        for stream in self.streams:
            stream.stop()
        # What a mailer still has in hand no longer matters: the next test
        # starts from empty tables.
        for mailer in self.mailers:
            mailer.kill()


@pytest.fixture
def mail_path(mail_stack, smtp, tmp_path):
    """Empty sign-up and outbox tables, an SMTP server accepting everything
    at once; mailers and streams started through it are stopped after."""
    with mail_stack.connect() as conn:
        conn.execute("TRUNCATE accounts_outgoingmail, accounts_signup")
    smtp.reset()
    path = MailPath(mail_stack, smtp, tmp_path)
    yield path
    path.close()
    for mailer in path.mailers:
        assert not mailer.lines("Traceback"), mailer.log.tail()
    assert not mail_stack.gunicorn.error_log.matching("Traceback")


def thanked(attempts):
    """The addresses that got the thank-you page; every sign-up must."""
    refused = [(a.email, repr(a.outcome)[:200]) for a in attempts if not a.thanked]
    assert not refused, refused[:10]
    return [a.email.lower() for a in attempts]


def check_each_mail_once(path, addresses, *, twice=(), failed=()):
    """Each of ADDRESSES has one mail queued, sent (or FAILED, for good) and
    received by the server once (twice for those in TWICE, never for FAILED);
    no other address got mail. Returns the counts, for the report."""
    rows = path.outbox()
    received = path.smtp.counts()
    problems = []
    for address in addresses:
        mails = rows.get(address, [])
        expected_status = "failed" if address in failed else "sent"
        expected_count = 0 if address in failed else 2 if address in twice else 1
        if [m.status for m in mails] != [expected_status]:
            problems.append(f"{address}: queued {[m.status for m in mails]}")
        if received[address] != expected_count:
            problems.append(f"{address}: received {received[address]} mails")
    strangers = set(received) - set(addresses)
    problems += [f"{address}: mail to no sign-up" for address in strangers]
    assert not problems, "\n".join(problems[:20]) + f"\n({len(problems)} in all)"
    # A mail sent again is the same mail: one Message-ID per outbox row.
    ids = Counter(mail.message_id for mail in path.smtp.mails())
    assert all(
        ids[m.message_id] == 1 + (address in twice)
        for address in addresses
        for m in path.smtp.to(address)
    ), ids.most_common(3)
    statuses = Counter(m.status for mails in rows.values() for m in mails)
    counts = {
        "answered": len(addresses),
        "queued": sum(statuses.values()),
        "sent": statuses["sent"],
        "failed": statuses["failed"],
        "received": sum(received.values()),
    }
    print(counts)
    return counts


def seconds_summary(values):
    values = sorted(values)
    p95 = values[int(0.95 * (len(values) - 1))]
    return (
        f"median {statistics.median(values) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {values[-1] * 1000:.0f} ms"
    )


def test_a_sign_up_never_waits_for_the_mail_server(mail_path):
    """The mail goes out after the answer, from the mailer: a server taking
    5 s to answer each mail leaves the sign-up as fast as with no mailer."""
    path = mail_path
    # New workers pay for their first requests (templates, connections).
    for number in range(6):
        path.stack.sign_up("Warm", f"warm-{number}@example.com")
    quiet = path.stream("quiet").start()
    time.sleep(4)
    without_mailer = quiet.stop()
    path.smtp.reply_delay = 5.0
    mailer = path.mailer()
    path.smtp.wait(lambda s: s.holding, timeout=10, message="a held answer")
    slow = path.stream("slow").start()
    time.sleep(4)
    with_slow_server = slow.stop()

    thanked(without_mailer + with_slow_server)
    before = [a.seconds for a in without_mailer]
    during = [a.seconds for a in with_slow_server]
    print(f"no mailer: {seconds_summary(before)}")
    print(f"server answering in 5 s: {seconds_summary(during)}")
    # The mailer spent the whole stream waiting for the server's answers.
    assert len(path.smtp.mails()) <= 2, "the slow server was not slow"
    assert path.queued() >= len(without_mailer + with_slow_server)
    assert max(before + during) < 1.0
    mailer.kill()


def test_mail_server_down_for_a_minute(mail_path):
    """No sign-up fails while the server is away; the mailer keeps trying at
    most MAX_PAUSE_SECONDS apart, the waiting mail shows why in the outbox,
    and once the server is back every mail goes out, once."""
    path, smtp = mail_path, mail_path.smtp
    mailer = path.mailer()
    stream = path.stream("down").start()
    smtp.wait(lambda s: len(s.received) >= 3, timeout=20, message="3 mails")
    smtp.stop()
    down_at = time.monotonic()
    taken_before = len(smtp.mails())

    time.sleep(OUTAGE_SECONDS / 2)
    with path.stack.connect() as conn:
        waiting = conn.execute(
            "SELECT attempts, last_error FROM accounts_outgoingmail"
            " WHERE status = 'queued' ORDER BY due_at, id LIMIT 1"
        ).fetchone()
    # Alive for its liveness probe: a mail server outage is no reason to
    # restart the mailer.
    heartbeat_age = time.time() - mailer.heartbeat.stat().st_mtime
    time.sleep(max(0, down_at + OUTAGE_SECONDS - time.monotonic()))
    queued_at_restart = path.queued()
    smtp.start()
    up_at = time.monotonic()
    smtp.wait(
        lambda s: len(s.received) > taken_before,
        timeout=BACK_WITHIN,
        message="the first mail after the restart",
    )
    first_after = time.monotonic() - up_at
    time.sleep(2)
    attempts = stream.stop()
    path.wait_until_sent(timeout=DRAINED_WITHIN)
    drained = time.monotonic() - up_at

    counts = check_each_mail_once(path, thanked(attempts))
    pauses = mailer.lines("mail server unreachable")
    print(
        f"{queued_at_restart} mails queued after {OUTAGE_SECONDS} s down; "
        f"first sent {first_after:.1f} s after the restart; "
        f"{len(pauses)} tries while down"
    )
    print(f"pauses between them: {[line.rsplit(' ', 2)[-2] for line in pauses]}")
    assert queued_at_restart >= OUTAGE_SECONDS * RATE * 0.8
    assert counts["failed"] == 0
    # The owner sees why the mail waits: the try was counted, with the error.
    attempts_made, error = waiting
    assert attempts_made >= 1, waiting
    assert error.startswith("unreachable: "), waiting
    # Its pauses doubled from 1 s up to the longest, and stayed there.
    pause_seconds = [float(line.rsplit(" ", 2)[-2]) for line in pauses]
    doubling = [min(2.0**n, MAX_PAUSE_SECONDS) for n in range(len(pauses))]
    assert pause_seconds == doubling
    assert pause_seconds[-1] == MAX_PAUSE_SECONDS
    assert first_after < BACK_WITHIN
    assert heartbeat_age < 5, heartbeat_age
    print(f"backlog drained {drained:.1f} s after the restart")
    assert mailer.stop() == 0


def server_tries(smtp):
    """Each address's tries as the server saw them: the answer to RCPT, or
    to DATA once RCPT was accepted, with when it was given."""
    tries = {}
    for answer in smtp.answered():
        address = answer.recipients[0].lower()
        if answer.command == "RCPT":
            tries.setdefault(address, []).append(answer)
        elif answer.command == "DATA":
            tries[address][-1] = answer
    return tries


def test_mail_refused_for_now_is_sent_later_once(mail_path):
    """4xx at RCPT (greylisting) and then at DATA, for a few seconds each:
    every refused mail is tried again after its back-off, each try counted
    on its row, and sent once the server accepts."""
    path, smtp = mail_path, mail_path.smtp
    path.mailer()
    stream = path.stream("later").start()
    time.sleep(1)
    with smtp.refusing(GREYLISTED, at="RCPT"):
        time.sleep(3)
    with smtp.refusing(QUEUE_FULL, at="DATA"):
        time.sleep(3)
    accepting_at = time.monotonic()
    time.sleep(1)
    attempts = stream.stop()
    path.wait_until_sent(timeout=40)
    delivered = time.monotonic() - accepting_at

    addresses = thanked(attempts)
    counts = check_each_mail_once(path, addresses)
    tries = server_tries(smtp)
    rows = path.outbox()
    refused = {a: t for a, t in tries.items() if t[0].code != 250}
    replies = Counter(t.reply for each in refused.values() for t in each[:-1])
    print(
        f"{len(refused)} of {counts['queued']} mails refused for now: {replies}; "
        f"at most {max(map(len, tries.values()))} tries; "
        f"all sent {delivered:.1f} s after the server accepted again"
    )
    assert len(refused) >= 4 * RATE, "the refusals were not felt"
    assert replies.keys() == {GREYLISTED, QUEUE_FULL}
    for address, each in tries.items():
        # Refused for now until the last, which was accepted.
        assert all(400 <= t.code < 500 for t in each[:-1]), each
        assert each[-1].reply == ACCEPTED, each
        # The row counts every try, and forgets the last refusal once sent.
        (row,) = rows[address]
        assert row.attempts == len(each), (address, row, each)
        assert row.last_error == ""
        # Tried again no sooner than the back-off: 5 s, then 10 s, ...
        for number, (one, next_) in enumerate(itertools.pairwise(each)):
            backoff = FIRST_RETRY.total_seconds() * 2**number
            assert next_.at - one.at >= backoff - 0.5, (address, number)


def test_mail_refused_for_good_is_failed_with_the_answer_and_not_retried(
    mail_path,
):
    """5xx for some recipients, at RCPT for some and at DATA for others:
    their mail is failed with the server's answer, tried once; the rest is
    sent."""
    path, smtp = mail_path, mail_path.smtp
    stream = path.stream("never")
    unknown = {stream.address(n).lower() for n in range(0, 1000, 4)}
    rejected = {stream.address(n).lower() for n in range(1, 1000, 4)}
    smtp.refuse(UNKNOWN_USER, at="RCPT", recipients=unknown)
    smtp.refuse(REJECTED, at="DATA", recipients=rejected)
    path.mailer()
    stream.start()
    time.sleep(4)
    attempts = stream.stop()
    path.wait_until_sent(timeout=20)
    # Long enough after the last refusal for a retry to have come.
    last = max(a.at for a in smtp.answered() if a.code >= 500)
    time.sleep(max(0, last + FIRST_RETRY.total_seconds() + 2 - time.monotonic()))

    addresses = thanked(attempts)
    failed = (unknown | rejected) & set(addresses)
    counts = check_each_mail_once(path, addresses, failed=failed)
    assert counts["failed"] >= RATE
    assert counts["sent"] >= RATE
    rows = path.outbox()
    tries = server_tries(smtp)
    for address in failed:
        (row,) = rows[address]
        answer = UNKNOWN_USER if address in unknown else REJECTED
        assert (row.attempts, row.last_error) == (1, answer), (address, row)
        assert [t.reply for t in tries[address]] == [answer], tries[address]


def test_a_mailer_killed_mid_send_loses_nothing(mail_path):
    """SIGKILL while the server holds its answer to a mail it has taken: the
    mailer never committed that mail as sent, so a second mailer sends it
    again (the one duplicate, with the same Message-ID) and all the rest
    once."""
    path, smtp = mail_path, mail_path.smtp
    smtp.reply_delay = 2.0
    stream = path.stream("killed").start()
    first = path.mailer("first")
    smtp.wait(
        lambda s: s.holding and len(s.answered("DATA")) >= 2,
        timeout=30,
        message="two mails sent and a third in hand",
    )
    in_hand = smtp.mails()[-1].recipients[0].lower()
    assert first.kill() == -signal.SIGKILL
    # The kill came before the server's answer, which now never comes.
    assert not [a for a in smtp.answered("DATA") if in_hand in a.recipients]
    # Its transaction died with it: the mail is queued, its try uncounted.
    assert [(m.status, m.attempts) for m in path.outbox()[in_hand]] == [("queued", 0)]
    smtp.reply_delay = 0.0
    second = path.mailer("second")
    time.sleep(2)
    attempts = stream.stop()
    path.wait_until_sent(timeout=20)

    addresses = thanked(attempts)
    counts = check_each_mail_once(path, addresses, twice={in_hand})
    twice = [a for a, n in smtp.counts().items() if n > 1]
    assert twice == [in_hand]
    first_ids, second_ids = set(first.sent()), set(second.sent())
    in_hand_id = path.outbox()[in_hand][0].id
    assert in_hand_id in second_ids
    assert in_hand_id not in first_ids
    assert not first_ids & second_ids
    assert len(first_ids) + len(second_ids) == counts["sent"]
    print(f"first sent {len(first_ids)}, second {len(second_ids)}")


def outbox_waiters(stack):
    """Sessions waiting for a lock on the outbox table."""
    with stack.connect() as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_locks"
            " WHERE relation = 'accounts_outgoingmail'::regclass AND NOT granted"
        ).fetchone()[0]


@pytest.mark.parametrize("mailers", [2, 4])
def test_mailers_at_once_send_each_mail_once(mail_path, mailers):
    """A backlog of 300 mails, and MAILERS mailers let loose on it at the
    same moment (each held at the outbox's table lock until all are up),
    while sign-ups go on: every mail sent once, by one of them."""
    path, stack = mail_path, mail_path.stack
    backlog = path.stream("backlog")
    with ThreadPoolExecutor(max_workers=10) as pool:
        pair = stack.csrf_pair()
        outcomes = list(
            pool.map(
                lambda n: stack.sign_up("Backlog", backlog.address(n), pair=pair),
                range(300),
            )
        )
    assert [o.status_code for o in outcomes] == [302] * 300
    with stack.connect() as conn:
        conn.execute("LOCK TABLE accounts_outgoingmail IN EXCLUSIVE MODE")
        workers = [path.mailer() for _ in range(mailers)]
        wait_for(
            lambda: outbox_waiters(stack) >= mailers,
            timeout=20,
            message="every mailer waiting for the outbox",
        )
    stream = path.stream("meanwhile").start()
    started = time.monotonic()
    addresses = [backlog.address(n).lower() for n in range(300)]
    path.smtp.wait(
        lambda s: set(addresses) <= s.counts().keys(),
        timeout=30,
        message="the backlog sent",
    )
    seconds = time.monotonic() - started
    time.sleep(max(0, started + 3 - time.monotonic()))
    attempts = stream.stop()
    path.wait_until_sent(timeout=30)

    counts = check_each_mail_once(path, addresses + thanked(attempts))
    sent = [set(worker.sent()) for worker in workers]
    shares = [len(s) for s in sent]
    print(f"backlog of 300 sent in {seconds:.1f} s by {mailers} mailers")
    print(f"{counts['sent']} mails in all, sent by each: {shares}")
    assert sum(map(len, sent)) == counts["sent"]
    assert len(set().union(*sent)) == counts["sent"]
    assert all(sent), "a mailer sent nothing: they did not run at once"
    assert [worker.stop() for worker in workers] == [0] * mailers


def test_sigterm_lets_the_mailer_finish_the_mail_in_hand(mail_path):
    """SIGTERM while the server holds its answer: the mailer waits for it,
    marks the mail sent, takes no other and exits 0; the next mailer sends
    the rest, once each."""
    path, smtp = mail_path, mail_path.smtp
    hold = 3.0
    smtp.reply_delay = hold
    stream = path.stream("drain").start()
    mailer = path.mailer()
    smtp.wait(lambda s: s.holding, timeout=30, message="a mail in hand")
    in_hand = smtp.mails()[-1].recipients[0].lower()
    taken = len(smtp.mails())
    signalled = time.monotonic()
    code = mailer.stop(timeout=hold + 10)
    seconds = time.monotonic() - signalled

    print(f"exited {code} {seconds:.1f} s after SIGTERM, holding {hold:g} s")
    assert code == 0
    assert seconds < hold + 3
    assert len(smtp.mails()) == taken
    assert [t.reply for t in server_tries(smtp)[in_hand]] == [ACCEPTED]
    assert [m.status for m in path.outbox()[in_hand]] == ["sent"]
    # Every mail it took, the held one last, it marked sent.
    assert len(mailer.sent()) == taken
    assert mailer.lines(f"Mailer stopped after sending {taken} mail")
    smtp.reply_delay = 0.0
    path.mailer()
    time.sleep(1)
    attempts = stream.stop()
    path.wait_until_sent(timeout=20)
    check_each_mail_once(path, thanked(attempts))
