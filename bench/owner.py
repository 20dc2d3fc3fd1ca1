"""The owner's paths on a table of many sign-ups: the admin's list and searches,
/readyz, bootstrap, both CSV exports and a worker's memory after public use."""

import os
import statistics
import subprocess
import sys
import threading
import time
from urllib.parse import quote

from bench.load import BROWSER_HEADERS, LogSlice, measure, run_wrk, settle
from bench.loader import load
from loopback.browser import admin_login, form_token
from loopback.processes import PROJECT_ROOT, PeakRss, manage, rss_mib

ADMIN_USER = "owner"
CHANGELIST = "/admin/accounts/signup/"
# Part of the loader's Kowalski/Kowalska, as a half-remembering owner would type.
NAME_FRAGMENT = "owalsk"


def run(stack, site, options):
    """Bootstrap (creating the admin), OPTIONS.rows sign-ups, the timings."""
    password = stack.secret_key[:24]
    env = site.env | {
        "DJANGO_SUPERUSER_USERNAME": ADMIN_USER,
        "DJANGO_SUPERUSER_EMAIL": "owner@example.com",
        "DJANGO_SUPERUSER_PASSWORD": password,
    }
    bootstrap_runs(env, runs=1)  # creates the admin account
    print(f"loading {options.rows:,} sign-ups")
    results = {"target": site.name, "rows": options.rows}
    with stack.database.connect(autocommit=True) as conn:
        # Exactly ROWS: the load phases' sign-ups, all today, would skew the
        # chart. Their queued mail goes too: its foreign key refuses a
        # TRUNCATE of the sign-ups alone.
        conn.execute("TRUNCATE accounts_signup, accounts_outgoingmail RESTART IDENTITY")
        results["load"] = load(conn, options.rows)
        results["table_size"] = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('accounts_signup'))"
        ).fetchone()[0]
        # A sign-up from the middle of the table, as the owner would look up.
        email = conn.execute(
            "SELECT email FROM accounts_signup ORDER BY id OFFSET %s LIMIT 1",
            (options.rows // 2,),
        ).fetchone()[0]
    print("timing the owner's paths")
    session = admin_login(site.url, site.host, ADMIN_USER, password)
    paths = {
        "admin_list": CHANGELIST,
        "admin_search_email": f"{CHANGELIST}?q={quote(email)}",
        "admin_search_name": f"{CHANGELIST}?q={NAME_FRAGMENT}",
        "readyz": "/readyz",
    }
    listed = {"admin_search_email": email, "admin_search_name": "kowalsk"}
    for key, text in listed.items():
        page = session.get(site.url + paths[key], timeout=60)
        if text.lower() not in page.text.lower():
            raise RuntimeError(f"the admin search {paths[key]} did not list {text}")
    cookie = "Cookie: " + "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    for key, path in paths.items():
        results[key] = {"path": path} | measure(
            site,
            "get.lua",
            (path,),
            path=path,
            # /readyz as the orchestrator asks it: from gunicorn itself.
            direct=key == "readyz",
            headers=[] if key == "readyz" else [cookie],
            duration=options.owner_duration,
            connections=1,
        )
    results["bootstrap"] = bootstrap_runs(env, runs=options.bootstrap_runs)
    with stack.one_worker(site.spec, f"{site.name}-export") as target:
        results["admin_export"] = admin_export(target, password)
    results["command_export"] = command_export(env, stack.root / "export.csv")
    with stack.one_worker(site.spec, f"{site.name}-memory") as target:
        results["worker_memory"] = worker_memory(target, options.memory_requests)
    return results


def bootstrap_runs(env, *, runs):
    """Wall seconds of each ``manage.py bootstrap`` on the ready database."""
    walls = []
    for _ in range(runs):
        started = time.monotonic()
        result = manage("bootstrap", "--no-input", "--timeout", "10", env=env)
        walls.append(time.monotonic() - started)
        if result.returncode != 0 or "schema already up to date" not in result.stdout:
            raise RuntimeError(f"bootstrap failed:\n{result.stdout}{result.stderr}")
    return {"runs": len(walls), "wall_s": walls, "median_s": statistics.median(walls)}


def lines_and_bytes(chunks):
    size = lines = 0
    for chunk in chunks:
        size += len(chunk)
        lines += chunk.count(b"\n")
    return {"rows": lines - 1, "bytes": size}  # the header line is no row


def admin_export(target, password):
    """The admin action on every sign-up, served by TARGET's one fresh
    worker: wall seconds, and that worker's peak RSS (sampled from the login on)."""
    (worker,) = target.gunicorn.workers()
    with PeakRss(worker) as peak:
        figures = export_through_the_admin(target, password)
    figures["peak_rss_mb"] = peak.mib
    if target.gunicorn.workers() != [worker]:
        raise RuntimeError("the exporting worker was replaced during the export")
    return figures


def export_through_the_admin(target, password):
    session = admin_login(target.url, target.host, ADMIN_USER, password)
    page = session.get(target.url + CHANGELIST, timeout=60)
    started = time.monotonic()
    response = session.post(
        target.url + CHANGELIST,
        data={
            "csrfmiddlewaretoken": form_token(page.text),
            "action": "export_csv",
            "select_across": "1",
            "index": "0",
            "_selected_action": "1",
        },
        headers={"Origin": f"http://{target.host}"},
        stream=True,
        allow_redirects=False,
        timeout=120,
    )
    if not response.headers.get("Content-Type", "").startswith("text/csv"):
        raise RuntimeError(f"the export answered {response.status_code}")
    figures = lines_and_bytes(response.iter_content(chunk_size=1 << 16))
    figures["wall_s"] = time.monotonic() - started
    return figures


def command_export(env, output):
    """``manage.py export_signups --output OUTPUT``: wall seconds and the
    process's peak RSS (from wait4: this process alone)."""
    started = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "manage.py", "export_signups", "--no-progress", "-o", output],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as process:
        deadline = threading.Timer(300, process.kill)
        deadline.start()
        try:
            _pid, status, usage = os.wait4(process.pid, 0)
        finally:
            deadline.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            stderr = process.stderr.read().decode(errors="replace")
            raise RuntimeError(f"export_signups failed or took over 300 s:\n{stderr}")
    with output.open("rb") as csv:
        figures = lines_and_bytes(iter(lambda: csv.read(1 << 20), b""))
    output.unlink()
    wall = time.monotonic() - started
    return figures | {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def worker_memory(target, wanted):
    """GET / and sign-up POSTs, alternately, to TARGET's one fresh worker
    until it has served WANTED (or a time limit passed); its RSS then."""
    (worker,) = target.gunicorn.workers()
    fresh = rss_mib(worker)
    served = LogSlice(target.gunicorn.access_log.path)
    args = (*target.signup_args(), "mixed")
    origin = f"Origin: http://{target.host}"
    headers = [f"Host: {target.host}", *BROWSER_HEADERS, origin]
    count, deadline = 0, time.monotonic() + max(20, wanted / 100)
    while count < wanted and time.monotonic() < deadline:
        seconds = max(1, min(5, int(deadline - time.monotonic())))
        wrk = {"duration": seconds, "connections": 2, "headers": headers}
        run_wrk(target.url, "signup.lua", args, **wrk)
        settle(served.path, quiet=0.2)
        count = sum(served.statuses("GET", "/").values())
        count += sum(served.statuses("POST", "/").values())
    if target.gunicorn.workers() != [worker]:
        raise RuntimeError("the worker was replaced during the measurement")
    return {
        "requests": count,
        "rss_fresh_mb": fresh,
        "rss_mb": rss_mib(worker),
        "master_rss_mb": rss_mib(target.gunicorn.process.pid),
    }
