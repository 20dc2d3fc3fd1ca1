"""
A real SMTP server on loopback for the mail tests: aiosmtpd, in a thread of
the test process, on 127.0.0.1 with a port the kernel picks. It records each
mail it accepts and each answer it gives, and it can be told to refuse (any
4xx or 5xx answer, to every recipient or some, at RCPT or at DATA), to hold
its answer to DATA for a while, or to go down and come back on the same port.

Down means what a stopped mail server means to a client: its open sessions
are cut and a new connection is refused. The port stays reserved meanwhile
(bound, not listening), so nothing else can take it before the restart.
"""

import asyncio
import contextlib
import email
import email.policy
import logging
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from aiosmtpd.smtp import SMTP

# aiosmtpd logs every command at INFO: thousands of lines in a failing
# test's report.
logging.getLogger("mail.log").setLevel(logging.WARNING)

ACCEPTED = "250 2.0.0 Accepted for delivery"


@dataclass(frozen=True)
class Received:
    """A mail the server accepted: its envelope, as parsed, and when."""

    sender: str
    recipients: tuple
    message: email.message.EmailMessage
    at: float  # time.monotonic()

    @property
    def message_id(self):
        return self.message["Message-ID"]


@dataclass(frozen=True)
class Answer:
    """What the server answered to one RCPT (for one recipient) or DATA."""

    command: str
    recipients: tuple
    reply: str
    at: float  # time.monotonic()

    @property
    def code(self):
        return int(self.reply[:3])


@dataclass(frozen=True)
class Refusal:
    command: str  # "RCPT" or "DATA"
    reply: str  # e.g. "451 4.3.0 Try again later"
    recipients: frozenset | None  # lower-cased; None: everyone


class _Session(SMTP):
    """aiosmtpd's session, known to its server so that stop() can cut it."""

    def __init__(self, owner, **kwargs):
        self.owner = owner
        super().__init__(owner, **kwargs)

    def connection_made(self, transport):
        self.owner.sessions.add(self)
        self.owner.connections += 1
        super().connection_made(transport)

    def connection_lost(self, error):
        self.owner.sessions.discard(self)
        super().connection_lost(error)


class SMTPServer:
    """aiosmtpd on 127.0.0.1, a new port each; start(), stop() (down, port
    kept), start() again, close(). Also a context manager.

    What it accepted is in ``received``, what it answered in ``answers``.
    ``refuse()`` adds a refusal, ``accept()`` drops them all;
    ``reply_delay`` holds the answer to DATA that long after the server has
    taken the mail, as a slow server (or one whose answer is lost) does: a
    client that vanishes meanwhile has still had its mail taken."""

    def __init__(self):
        self.received = []
        self.answers = []
        self.refusals = []
        self.reply_delay = 0.0
        self.holding = 0  # answers to DATA being held right now
        self.connections = 0  # sessions opened since made or reset()
        self.sessions = set()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._server = None
        self._reserved = self._reserve(0)
        self.port = self._reserved.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="smtp-server", daemon=True
        )
        self._thread.start()

    @property
    def url(self):
        """The site's EMAIL_URL for this server."""
        return f"smtp://127.0.0.1:{self.port}"

    # Up and down.

    @staticmethod
    def _reserve(port):
        sock = socket.socket()
        # A restart binds again while the sessions it cut sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    def _run(self, coroutine, timeout=10):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    @property
    def running(self):
        return self._server is not None

    def start(self):
        """Listen (again) on the server's port."""
        if self._server is None:
            sock, self._reserved = self._reserved, None
            sock.listen(128)

            async def serve():
                return await self._loop.create_server(
                    lambda: _Session(
                        self, hostname="smtp.loopback.test", loop=self._loop
                    ),
                    sock=sock,
                )

            self._server = self._run(serve())
        return self

    def stop(self):
        """Go down: cut every open session, refuse new connections."""
        if self._server is None:
            return self
        server, self._server = self._server, None

        async def shut():
            server.close()
            for session in list(self.sessions):
                if session.transport is not None:
                    session.transport.abort()
            await asyncio.sleep(0)

        self._run(shut())
        self._reserved = self._reserve(self.port)
        return self

    def close(self):
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._reserved.close()

    __enter__ = start

    def __exit__(self, *exc_info):
        self.close()

    # What it answers.

    def refuse(self, reply, *, at="DATA", recipients=None):
        """Answer REPLY (e.g. "451 4.3.0 Try again later") at RCPT or DATA,
        to RECIPIENTS (addresses, any case) or to everyone."""
        assert at in ("RCPT", "DATA"), at
        assert reply[:3].isdigit(), reply
        assert reply[0] in "45", reply
        chosen = None if recipients is None else frozenset(map(str.lower, recipients))
        with self._lock:
            self.refusals.append(Refusal(at, reply, chosen))

    def accept(self):
        """Answer 250 again to everything."""
        with self._lock:
            self.refusals.clear()

    @contextlib.contextmanager
    def refusing(self, reply, **kwargs):
        self.refuse(reply, **kwargs)
        try:
            yield self
        finally:
            self.accept()

    def reset(self):
        """Back to accepting everything at once, with nothing recorded."""
        with self._lock:
            self.refusals.clear()
            self.received.clear()
            self.answers.clear()
            self.reply_delay = 0.0
            self.connections = 0
        return self.start()

    def _refusal(self, command, recipients):
        for refusal in self.refusals:
            if refusal.command == command and (
                refusal.recipients is None
                or any(r.lower() in refusal.recipients for r in recipients)
            ):
                return refusal.reply
        return None

    def _answer(self, command, recipients, reply):
        with self._changed:
            self.answers.append(
                Answer(command, tuple(recipients), reply, time.monotonic())
            )
            self._changed.notify_all()
        return reply

    # aiosmtpd's handler hooks, run in the server's thread.

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self._lock:
            refusal = self._refusal("RCPT", [address])
        if refusal is None:
            envelope.rcpt_tos.append(address)
        return self._answer("RCPT", [address], refusal or "250 2.1.5 OK")

    async def handle_DATA(self, server, session, envelope):
        with self._changed:
            refusal = self._refusal("DATA", envelope.rcpt_tos)
            if refusal is None:
                message = email.message_from_bytes(
                    envelope.original_content, policy=email.policy.default
                )
                self.received.append(
                    Received(
                        envelope.mail_from,
                        tuple(envelope.rcpt_tos),
                        message,
                        time.monotonic(),
                    )
                )
                delay = self.reply_delay
                if delay > 0:
                    self.holding += 1
                self._changed.notify_all()
        if refusal is not None:
            return self._answer("DATA", envelope.rcpt_tos, refusal)
        if delay > 0:
            try:
                # Cancelled if the client goes away: the mail stays taken.
                await asyncio.sleep(delay)
            finally:
                with self._changed:
                    self.holding -= 1
                    self._changed.notify_all()
        return self._answer("DATA", envelope.rcpt_tos, ACCEPTED)

    # Reading what happened, from the tests' thread.

    def wait(self, condition, *, timeout, message="the SMTP server's condition"):
        """Wait until CONDITION(server) is true, checked whenever the server
        takes a mail or answers; return its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := condition(self)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{message} not met within {timeout} s")
                self._changed.wait(min(left, 0.5))
            return result

    def mails(self):
        """A copy of what it accepted so far."""
        with self._lock:
            return list(self.received)

    def counts(self):
        """How many mails each recipient (lower-cased) got."""
        return Counter(r.lower() for mail in self.mails() for r in mail.recipients)

    def to(self, address):
        """The mails ADDRESS (any case) got."""
        address = address.lower()
        return [
            mail
            for mail in self.mails()
            if address in (r.lower() for r in mail.recipients)
        ]

    def answered(self, command=None):
        with self._lock:
            return [a for a in self.answers if command in (None, a.command)]


@pytest.fixture
def smtp_server():
    """An SMTPServer for one test, accepting everything; ``.url`` is the
    site's EMAIL_URL."""
    with SMTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def smtp():
    """An SMTPServer for a module: its tests and the site they share."""
    with SMTPServer() as server:
        yield server
