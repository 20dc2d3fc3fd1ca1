"""
Fixtures of the browser tests: Debian's Chromium, driven by Playwright, uses
the site through nginx -> gunicorn -> Django -> PostgreSQL on loopback (the
ServingStack of the serving tests), as a person would.

Playwright never downloads a browser here: it starts /usr/bin/chromium
(``apt-get install chromium``; .ci/run installs it). Without Chromium or the
playwright package the tests fail under CI=true and are skipped elsewhere,
with the reason.

Every page a test opens is watched: a console error, an uncaught exception or
a Content-Security-Policy violation fails the test.

Screenshots: the tests save the pictures the README shows. By default they go
to a temporary directory; ``--update-screenshots`` writes them to
docs/screenshots/ instead:

    .venv/bin/pytest tests/browser --update-screenshots
"""

import contextlib
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from loopback.nginx import NGINX_BINARY
from tests.support import ci
from tests.support.commands import PROJECT_ROOT, manage
from tests.support.stack import ServingStack

CHROMIUM = Path(os.environ.get("SIGNUP_TEST_CHROMIUM", "/usr/bin/chromium"))
# Headless, and nothing that reaches out of the machine on its own (updates,
# sync, field trials, safe browsing): the test machines have no network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # as root in a container or VM, the sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
]
SCREENSHOT_DIR = PROJECT_ROOT / "docs" / "screenshots"
ADMIN_USERNAME = "owner"
ADMIN_PASSWORD = "browser test admin passphrase"
DESKTOP = {"width": 1280, "height": 800}
# The visitor's pages are a small card: a smaller window frames it better.
VISITOR = {"width": 760, "height": 620}
PHONE = {"width": 375, "height": 667}  # a small phone (iPhone SE)


def unavailable(reason):
    ci.unavailable(f"browser tests did not run: {reason}")


PLAYWRIGHT_MISSING = (
    "the playwright package is not installed (install the test dependency "
    "group: pip install -e . --group test)"
)


def playwright_expect():
    """Playwright's ``expect``, for the test modules to import at the top;
    without the package: a failure in CI, else the module is skipped."""
    try:
        from playwright.sync_api import expect
    except ImportError:
        ci.unavailable(
            f"browser tests did not run: {PLAYWRIGHT_MISSING}",
            allow_module_level=True,
        )
    return expect


def pytest_addoption(parser):
    parser.addoption(
        "--update-screenshots",
        action="store_true",
        default=False,
        help="browser tests: write the README's screenshots to docs/screenshots/",
    )


# --------------------------------------------------------------------------
# the browser


@pytest.fixture(scope="session")
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable(PLAYWRIGHT_MISSING)
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_api):
    """Debian's Chromium, started by Playwright (never a downloaded build)."""
    ci.require_program(CHROMIUM, "the browser tests use Debian's Chromium", "chromium")
    browser = playwright_api.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000
    )
    yield browser
    browser.close()


# --------------------------------------------------------------------------
# the site


def seed_signups(database, now):
    """A month of sign-ups with a rising trend (the admin's chart and list),
    inserted with their own times; returns the (name, email, time) rows."""
    first_names = [
        "Ada", "Grace", "Alan", "Katherine", "Edsger", "Barbara", "Donald",
        "Frances", "Tim", "Radia", "Ken", "Margaret", "Linus", "Hedy", "John",
        "Sophie", "Niklaus", "Annie", "Dennis", "Karen",
    ]  # fmt: skip
    last_names = [
        "Lovelace", "Hopper", "Turing", "Johnson", "Dijkstra", "Liskov",
        "Knuth", "Allen", "Berners-Lee", "Perlman", "Thompson", "Hamilton",
        "Torvalds", "Lamarr", "Backus", "Wilson", "Wirth", "Easley",
        "Ritchie", "Spärck Jones",
    ]  # fmt: skip
    generator = random.Random(6)  # the same data, and pictures, every run
    rows = []
    for days_ago in range(29, -1, -1):
        per_day = max(0, round(1 + (29 - days_ago) * 0.17 + generator.gauss(0, 1.2)))
        for _ in range(per_day):
            first = generator.choice(first_names)
            last = generator.choice(last_names)
            email = (
                f"{first}.{last}.{len(rows)}@example.com".lower()
                .replace(" ", "")
                .replace("ä", "a")
            )
            moment = now - timedelta(
                days=days_ago, seconds=generator.randrange(60, 20 * 3600)
            )
            rows.append((f"{first} {last}", email, moment))
    with psycopg.connect(**database) as conn:
        conn.cursor().executemany(
            "INSERT INTO accounts_signup (name, email, signed_up_at)"
            " VALUES (%s, %s, %s)",
            rows,
        )
    return rows


@pytest.fixture(scope="session")
def site(browser):
    """The serving stack, a month of sign-ups and an admin account."""
    ci.require_program(
        NGINX_BINARY, "the browser tests go through Debian's nginx", "nginx"
    )
    from django.conf import settings

    stack = ServingStack(settings.DATABASES["default"]).start()
    try:
        stack.base_url = f"http://{stack.browser_host}"
        stack.connection = {
            "host": stack.database["POSTGRES_HOST"],
            "port": stack.database["POSTGRES_PORT"],
            "user": stack.database["POSTGRES_USER"],
            "password": stack.database["POSTGRES_PASSWORD"] or None,
            "dbname": stack.database["POSTGRES_DB"],
        }
        # Started a little before midnight, the month would shift under the
        # tests; the rows are placed relative to this moment.
        stack.seeded = seed_signups(stack.connection, datetime.now(UTC))
        result = manage(
            "bootstrap",
            env={
                **stack.env,
                "DJANGO_SUPERUSER_USERNAME": ADMIN_USERNAME,
                "DJANGO_SUPERUSER_EMAIL": "owner@example.com",
                "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
            },
        )
        assert result.returncode == 0, result.stdout + result.stderr
        yield stack
    finally:
        stack.stop()


# The site's minimum fill time (SIGNUP_MIN_FILL_SECONDS, unset in the stack).
MINIMUM_FILL_SECONDS = 1.0


def wait_as_a_person(page):
    """Wait until PAGE was loaded longer ago than the minimum fill time, as a
    person reading it would have: the tests type faster than people."""
    page.wait_for_function(
        f"() => performance.now() > {(MINIMUM_FILL_SECONDS + 0.25) * 1000}"
    )


def query(site, sql, params=()):
    with psycopg.connect(**site.connection) as conn:
        return conn.execute(sql, params).fetchall()


# --------------------------------------------------------------------------
# pages, watched for errors


class PageProblems:
    """Console errors, uncaught exceptions and CSP violations of a context's
    pages, each as a line saying where it happened."""

    INIT_SCRIPT = """
        document.addEventListener("securitypolicyviolation", (event) => {
            window.__signupReportViolation({
                directive: event.effectiveDirective,
                blocked: event.blockedURI,
                source: event.sourceFile + ":" + event.lineNumber,
                sample: event.sample,
                page: location.href,
            });
        });
    """

    def __init__(self, context):
        self.lines = []
        context.expose_function("__signupReportViolation", self._violation)
        context.add_init_script(self.INIT_SCRIPT)
        context.on("page", self.watch)

    def watch(self, page):
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.lines.append(f"uncaught: {error}"))

    def _console(self, message):
        if message.type in ("error", "assert"):
            location = message.location.get("url", "")
            self.lines.append(f"console {message.type}: {message.text} ({location})")

    def _violation(self, report):
        self.lines.append(f"CSP violation: {report}")


@contextlib.contextmanager
def watched_contexts(browser, base_url):
    """Factory of browser contexts (each a fresh profile) on the site at
    BASE_URL; at the end, none of their pages may have logged an error or a
    CSP violation."""
    contexts = []

    def make(viewport=VISITOR, **options):
        context = browser.new_context(
            base_url=base_url,
            viewport=viewport,
            locale="en-GB",
            timezone_id="UTC",
            color_scheme="light",
            reduced_motion="reduce",
            accept_downloads=True,
            **options,
        )
        context.set_default_timeout(10_000)
        context.problems = PageProblems(context)
        contexts.append(context)
        return context

    yield make
    problems = [line for context in contexts for line in context.problems.lines]
    for context in contexts:
        context.close()
    assert not problems, "the pages reported problems:\n" + "\n".join(problems)


@pytest.fixture
def open_context(browser, site):
    """Factory of watched browser contexts on the site (watched_contexts)."""
    with watched_contexts(browser, site.base_url) as make:
        yield make


@pytest.fixture
def page(open_context):
    """A page in a desktop-sized window of a fresh browser profile."""
    return open_context().new_page()


@pytest.fixture(scope="session")
def screenshot_dir(request, tmp_path_factory):
    if request.config.getoption("update_screenshots", default=False):
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        return SCREENSHOT_DIR
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def screenshot(screenshot_dir):
    """screenshot(page, "name"): PAGE's window as NAME.png; returns the path."""

    def take(page, name, **options):
        path = screenshot_dir / f"{name}.png"
        page.screenshot(path=path, animations="disabled", caret="hide", **options)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return path

    return take
