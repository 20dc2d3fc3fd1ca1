"""
Every SQL statement of the owner's pages, with its time and plan, on a full
table: a throwaway cluster is started, migrated and loaded (bench/loader.py),
then a child process renders each page with Django's test client as a
logged-in superuser and prints each statement, its milliseconds and, with
--explain, PostgreSQL's EXPLAIN ANALYZE of it; with --profile, where the
Python time of each page goes (cProfile, by cumulative time).

    python -m bench.queries                       # 1,000,000 rows
    python -m bench.queries --rows 200000 --explain
    python -m bench.queries --profile
"""

import argparse
import json
import subprocess
import sys
import time

PAGES = (
    ("list", "/admin/accounts/signup/"),
    ("search email", "/admin/accounts/signup/?q={email}"),
    ("search name", "/admin/accounts/signup/?q=owalsk"),
    ("readyz", "/readyz"),
)


def child(explain, email, profile=False):
    import cProfile
    import pstats

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="queries", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST="localhost:8080")
    client.force_login(user)
    for name, path in PAGES:
        path = path.format(email=email)
        client.get(path)  # compiled templates, warm caches
        statements = []

        def timed(execute, sql, params, many, context, statements=statements):
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                statements.append((time.perf_counter() - started, sql, params))

        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        with connection.execute_wrapper(timed):
            if profiler:
                profiler.enable()
            response = client.get(path)
            if profiler:
                profiler.disable()
        total = time.perf_counter() - started
        print(
            f"\n=== {name}: {path} -> {response.status_code} in {total * 1000:.1f} ms"
        )
        for seconds, sql, params in statements:
            print(f"  {seconds * 1000:8.2f} ms  {sql[:300]}")
            if explain and sql.lstrip().upper().startswith("SELECT"):
                with connection.cursor() as cursor:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                    for (line,) in cursor.fetchall():
                        print(f"      {line}")
        sql_total = sum(seconds for seconds, _, _ in statements)
        print(
            f"  {len(statements)} statements, {sql_total * 1000:.1f} ms in SQL, "
            f"{(total - sql_total) * 1000:.1f} ms in Python"
        )
        if profiler:
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("cumulative").print_stats(40)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.queries")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--email", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        child(options.explain, options.email, options.profile)
        return
    from bench.loader import load
    from bench.stack import Stack
    from loopback.processes import PROJECT_ROOT

    with Stack([]) as stack:
        with stack.database.connect() as conn:
            print(json.dumps(load(conn, options.rows)))
            email = conn.execute(
                "SELECT email FROM accounts_signup ORDER BY id OFFSET %s LIMIT 1",
                (options.rows // 2,),
            ).fetchone()[0]
        command = [sys.executable, "-m", "bench.queries", "--child", "--email", email]
        if options.explain:
            command.append("--explain")
        if options.profile:
            command.append("--profile")
        subprocess.run(
            command,
            env={
                **stack.base_env,
                "DJANGO_PUBLIC_URL": "http://localhost:8080",
                "PYTHONPATH": str(PROJECT_ROOT),
            },
            cwd=PROJECT_ROOT,
            check=True,
            timeout=900,
        )


if __name__ == "__main__":
    main()
