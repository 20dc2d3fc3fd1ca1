"""
The site's own cost per request, in-process: no nginx, gunicorn or wrk. For
each variant (--settings, or another tree with --root) and page, on a throwaway
cluster: the instructions a request executes, counted by callgrind, which
repeat where times drift; or with --profile cProfile's view, with --queries
each SQL statement (--explain: its plan). Usage: docs/testing.md#benchmark.
"""

import argparse
import cProfile
import io
import pstats
import re
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import quote
from wsgiref.util import setup_testing_defaults

from loopback.processes import PROJECT_ROOT, SITE_SETTINGS

HOST = "localhost:8080"
CHANGELIST = "/admin/accounts/signup/"
# name: (method, path, query); {email} is the sign-up in the middle of the table.
PAGES = {
    "get": ("GET", "/", ""),
    "post": ("POST", "/", ""),
    "list": ("GET", CHANGELIST, ""),
    "search-email": ("GET", CHANGELIST, "q={email}"),
    "search-name": ("GET", CHANGELIST, "q=owalsk"),
    "readyz": ("GET", "/readyz", ""),
}
CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
CALLGRIND_TOTAL = re.compile(r"^==\d+== Collected : (\d+)$", re.MULTILINE)


def page_requests(page):
    """(PAGE's status, number -> WSGI environ): a first visit, sign-ups with one
    CSRF pair and a new address each, or the admin's pages as the owner."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from accounts.models import Signup
    from loopback.browser import form_token, signup_token

    method, path, query = PAGES[page]
    client, headers, body = Client(HTTP_HOST=HOST), {}, ""
    if path == CHANGELIST:
        owner, _ = get_user_model().objects.get_or_create(
            username="profile", defaults={"is_staff": True, "is_superuser": True}
        )
        client.force_login(owner)
        emails = Signup.objects.order_by("id").values_list("email", flat=True)
        middle = emails[emails.count() // 2] if emails.exists() else "no@example.com"
        query = query.format(email=quote(middle))
    elif method == "POST":
        page = client.get("/").content.decode()
        body = f"csrfmiddlewaretoken={form_token(page)}&name=Ada+Lovelace"
        body += "&email=ada.{}%40example.com"
        if fill := signup_token(page):
            # One page's form token, old enough: every POST runs the checks.
            body += f"&signup_token={quote(fill, safe='')}"
            time.sleep(getattr(settings, "SIGNUP_MIN_FILL_SECONDS", 0) + 0.1)
        headers["HTTP_ORIGIN"] = f"http://{HOST}"
        headers["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
    if client.cookies:
        cookies = client.cookies.items()
        headers["HTTP_COOKIE"] = "; ".join(f"{k}={v.value}" for k, v in cookies)
    tag = uuid.uuid4().hex[:10]

    def environ(number):
        data = body.format(f"{tag}.{number}").encode()
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "HTTP_HOST": HOST,
            "HTTP_ACCEPT": "text/html",
            "HTTP_ACCEPT_ENCODING": "gzip, deflate",
            "HTTP_USER_AGENT": "Mozilla/5.0 bench",
            "HTTP_X_FORWARDED_FOR": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_LENGTH": str(len(data)),
            "wsgi.input": io.BytesIO(data),
            **headers,
        }
        setup_testing_defaults(environ)
        return environ

    return ("302" if method == "POST" else "200"), environ


def child(options):
    """The site of the tree ROOT (its code, this tree's harness) as gunicorn
    serves it, through its WSGI_APPLICATION: warm-up, then --requests requests
    of --page, or one request and its statements."""
    sys.path.insert(0, options.child)
    # A tree from before loopback/site_settings.py names its own
    # bench.site_settings, and this process's bench package comes first.
    import bench

    bench.__path__.append(str(Path(options.child) / "bench"))
    import django

    django.setup()
    from django.core.servers.basehttp import get_internal_wsgi_application

    application = get_internal_wsgi_application()
    (page,) = options.page
    expected, environ = page_requests(page)

    def call(number):
        status = []

        def start_response(line, headers, exc_info=None):
            status.append(line)

        b"".join(application(environ(number), start_response))
        if not status[0].startswith(expected):
            raise RuntimeError(f"{page}: {status[0]}")

    for number in range(1 if options.queries else min(200, options.requests)):
        call(-number - 1)  # warm-up
    if options.queries:
        return show_queries(call, options.explain)
    with cProfile.Profile() if options.profile else nullcontext() as profiler:
        for number in range(options.requests):
            call(number)
    if profiler:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(options.top)
        stats.sort_stats("cumulative").print_stats(options.top)


def show_queries(call, explain):
    """Every statement of one CALL, with its milliseconds (and plan)."""
    from django.db import connection

    statements = []

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append((time.perf_counter() - started, sql, params))

    started = time.perf_counter()
    with connection.execute_wrapper(timed):
        call(0)
    total = time.perf_counter() - started
    for seconds, sql, params in statements:
        print(f"  {seconds * 1000:8.2f} ms  {sql[:300]}")
        if explain and sql.lstrip().upper().startswith("SELECT"):
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                for (line,) in cursor.fetchall():
                    print(f"      {line}")
    in_sql = sum(seconds for seconds, _, _ in statements)
    print(
        f"  {len(statements)} statements, {in_sql * 1000:.1f} ms in SQL, "
        f"{(total - in_sql) * 1000:.1f} ms in Python"
    )


def instructions(command, requests, env):
    """Instructions per request: runs of N and 3N differenced over 2N, so
    start-up and the warm-up (min(200, N), equal for both from N=200) cancel."""
    requests = max(requests, 200)
    totals = []
    for count in (requests, 3 * requests):
        result = subprocess.run(
            [*CALLGRIND, *command, "--requests", str(count)],
            # Same hashing, so the same dict layouts, in every run.
            env={**env, "PYTHONHASHSEED": "0"},
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stdout + result.stderr)
        totals.append(int(CALLGRIND_TOTAL.search(result.stderr)[1]))
    return (totals[1] - totals[0]) / (2 * requests)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--settings", action="append", help="a settings module")
    parser.add_argument("--root", action="append", help="a copy of the project")
    parser.add_argument(
        "--page",
        action="append",
        choices=PAGES,
        help="repeatable [get and post; every page with --queries]",
    )
    parser.add_argument("--rows", type=int, default=0, help="sign-ups loaded [0]")
    parser.add_argument("--requests", type=int, default=200, help="N [200]")
    parser.add_argument("--profile", action="store_true", help="cProfile instead")
    parser.add_argument("--top", type=int, default=35, help="--profile lines [35]")
    parser.add_argument("--queries", action="store_true", help="SQL instead")
    parser.add_argument("--explain", action="store_true", help="with --queries")
    parser.add_argument("--child", metavar="ROOT", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        return child(options)
    counting = not (options.profile or options.queries)
    if counting and not shutil.which("valgrind"):
        parser.error("counting instructions needs valgrind: apt-get install valgrind")
    pages = options.page or (list(PAGES) if options.queries else ["get", "post"])
    variants = [(settings, PROJECT_ROOT) for settings in options.settings or []]
    variants += [(SITE_SETTINGS, Path(r).resolve()) for r in options.root or []]
    flags = [f"--{f}" for f in ("profile", "queries", "explain") if getattr(options, f)]
    from bench.loader import load
    from bench.stack import Stack, collect_static

    with Stack([]) as stack:
        if options.rows:
            with stack.database.connect(autocommit=True) as conn:
                load(conn, options.rows)
        variants = variants or [(SITE_SETTINGS, PROJECT_ROOT)]
        for number, (settings, root) in enumerate(variants):
            label = settings if root == PROJECT_ROOT else str(root)
            env = stack.base_env | {
                "DJANGO_SETTINGS_MODULE": settings,
                "DJANGO_PUBLIC_URL": f"http://{HOST}",
            }
            if root != PROJECT_ROOT:
                collect_static(root, env, stack.root / f"static-{number}")
            for page in pages:
                command = [sys.executable, "-m", "bench.profile", "--child", root]
                command += ["--page", page, "--top", str(options.top), *flags]
                if counting:
                    count = instructions(command, options.requests, env)
                    print(f"{page:12} {label:40} {count:12,.0f} instructions")
                else:
                    print(f"==== {page} {label}", flush=True)
                    command += ["--requests", str(options.requests)]
                    subprocess.run(command, env=env, cwd=PROJECT_ROOT, check=True)


if __name__ == "__main__":
    main()
