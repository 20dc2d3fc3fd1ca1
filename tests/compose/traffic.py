"""
Steady, bounded traffic through nginx while a test changes the stack under
it: one thread GETs the form, another signs up (form GET, a person's pause,
POST, thank-you page) with a fresh e-mail address each time. Every request
and its outcome is recorded, and every sign-up that reached its thank-you
page is listed, so a test can count failures and look each confirmed
sign-up up in the database.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field

import requests

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
FORM_TOKEN = re.compile(r'name="signup_token" value="([^"]+)"')
# Longer than the site's minimum fill time (SIGNUP_MIN_FILL_SECONDS, 1 s):
# sooner, the form would come back instead of the thank-you page.
FILL_SECONDS = 1.2
PAUSE_SECONDS = 0.1
TIMEOUT_SECONDS = 20


@dataclass
class Outcome:
    method: str
    path: str
    status: int | None  # None: no response at all
    ok: bool
    detail: str = ""
    seconds: float | None = None  # how long it took
    at: float = field(default_factory=time.monotonic)  # when it ended


def signup(base, email, name="Swarm Test"):
    """One sign-up as a browser does it; return (confirmed, [Outcome])."""
    outcomes = []
    session = requests.Session()
    session.headers["User-Agent"] = "signup-swarm-test"

    def call(method, path, expected, **kwargs):
        started = time.monotonic()
        try:
            response = session.request(
                method, base + path, timeout=TIMEOUT_SECONDS, **kwargs
            )
        except requests.RequestException as exc:
            outcomes.append(
                Outcome(
                    method,
                    path,
                    None,
                    False,
                    type(exc).__name__,
                    time.monotonic() - started,
                )
            )
            return None
        ok = response.status_code == expected
        outcomes.append(
            Outcome(
                method,
                path,
                response.status_code,
                ok,
                "" if ok else response.text[:200],
                time.monotonic() - started,
            )
        )
        return response if ok else None

    page = call("GET", "/", 200)
    if page is None:
        return False, outcomes
    time.sleep(FILL_SECONDS)
    posted = call(
        "POST",
        "/",
        302,
        data={
            "csrfmiddlewaretoken": TOKEN.search(page.text).group(1),
            "signup_token": FORM_TOKEN.search(page.text).group(1),
            "name": name,
            "email": email,
        },
        headers={"Origin": base, "Referer": base + "/"},
        allow_redirects=False,
    )
    if posted is None or posted.headers.get("Location") != "/thanks/":
        return False, outcomes
    thanks = call("GET", "/thanks/", 200)
    return thanks is not None, outcomes


@dataclass
class Traffic:
    base: str
    outcomes: list = field(default_factory=list)
    confirmed: list = field(default_factory=list)
    attempted: list = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._get_form, daemon=True),
            threading.Thread(target=self._sign_up, daemon=True),
        ]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=TIMEOUT_SECONDS * 4)

    def _record(self, outcomes):
        with self._lock:
            self.outcomes.extend(outcomes)

    def _get_form(self):
        session = requests.Session()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                response = session.get(self.base + "/", timeout=TIMEOUT_SECONDS)
                ok = response.status_code == 200
                outcome = Outcome(
                    "GET",
                    "/",
                    response.status_code,
                    ok,
                    "" if ok else response.text[:200],
                    time.monotonic() - started,
                )
            except requests.RequestException as exc:
                outcome = Outcome(
                    "GET",
                    "/",
                    None,
                    False,
                    type(exc).__name__,
                    time.monotonic() - started,
                )
            self._record([outcome])
            time.sleep(PAUSE_SECONDS)

    def _sign_up(self):
        while not self._stop.is_set():
            email = f"swarm-{uuid.uuid4().hex[:12]}@example.com"
            with self._lock:
                self.attempted.append(email)
            confirmed, outcomes = signup(self.base, email)
            self._record(outcomes)
            if confirmed:
                with self._lock:
                    self.confirmed.append(email)
            time.sleep(PAUSE_SECONDS)

    @property
    def failures(self):
        return [o for o in self.outcomes if not o.ok]

    def summary(self):
        posts = sum(1 for o in self.outcomes if o.method == "POST")
        return (
            f"{len(self.outcomes)} requests ({posts} sign-up POSTs), "
            f"{len(self.failures)} failed, {len(self.confirmed)} confirmed sign-ups"
        )
