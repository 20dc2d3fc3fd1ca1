"""
The owner's paths, timed on a full table: the admin's list and searches,
the CSV export (admin action and ``manage.py export_signups``), the
readiness probe, ``bootstrap`` on a ready database, and a worker's memory
after many public requests.
"""

import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import requests

from bench.load import BROWSER_HEADERS, LogSlice, run_wrk, settle
from bench.stack import TargetSpec
from loopback.browser import admin_login, form_token
from loopback.processes import PROJECT_ROOT, manage, proc_status

ADMIN_USER = "owner"
CHANGELIST = "/admin/accounts/signup/"
# In every generated last name "Kowalski"/"Kowalska": part of a name, as an
# owner half-remembering one would type it.
NAME_FRAGMENT = "owalsk"
PUBLIC_REQUEST = re.compile(r'"(GET|POST) / HTTP/')


class AdminSession:
    """A logged-in admin, through nginx, as a browser at TARGET's host."""

    def __init__(self, target, username, password):
        self.target = target
        self.http = admin_login(target.url, target.host, username, password)
        self.http.headers["Origin"] = f"http://{target.host}"

    def get(self, path):
        response = self.http.get(
            self.target.url + path, allow_redirects=False, timeout=60
        )
        response.raise_for_status()
        return response

    @property
    def cookie_header(self):
        return "Cookie: " + "; ".join(
            f"{name}={value}" for name, value in self.http.cookies.items()
        )

    def export_all(self):
        """The admin action on every sign-up; (seconds, bytes, data lines)."""
        page = self.get(CHANGELIST)
        started = time.monotonic()
        response = self.http.post(
            self.target.url + CHANGELIST,
            data={
                "csrfmiddlewaretoken": form_token(page.text),
                "action": "export_csv",
                "select_across": "1",
                "index": "0",
                "_selected_action": "1",
            },
            stream=True,
            allow_redirects=False,
            timeout=120,
        )
        response.raise_for_status()
        if not response.headers["Content-Type"].startswith("text/csv"):
            raise RuntimeError(f"the export answered {response.headers}")
        size = lines = 0
        for chunk in response.iter_content(chunk_size=1 << 16):
            size += len(chunk)
            lines += chunk.count(b"\n")
        return time.monotonic() - started, size, lines - 1


def time_path(target, path, *, duration, headers=(), samples=10, limit=60):
    """Requests for PATH one after another (one connection) for DURATION
    seconds, or longer for a slow page so that about SAMPLES are taken (at
    most LIMIT seconds); wrk's percentiles plus the statuses nginx logged."""
    started = time.monotonic()
    probe = requests.get(
        target.url + path,
        headers=dict(
            header.split(": ", 1) for header in [f"Host: {target.host}", *headers]
        ),
        allow_redirects=False,
        timeout=limit,
    )
    probe_seconds = time.monotonic() - started
    if probe.status_code != 200:
        raise RuntimeError(f"{path} answered {probe.status_code}")
    duration = min(limit, max(duration, math.ceil(probe_seconds * samples)))
    log = LogSlice(target.nginx_access_log)
    summary = run_wrk(
        target,
        "get.lua",
        (path,),
        duration=duration,
        connections=1,
        headers=[*BROWSER_HEADERS, *headers],
    )
    settle(target.nginx_access_log, quiet=0.1)
    statuses = log.statuses("GET", path)
    return {
        "path": path,
        "requests": summary["requests"],
        "p50_ms": summary["p50_us"] / 1000,
        "p90_ms": summary["p90_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "statuses": {str(status): count for status, count in statuses.items()},
        "errors": sum(
            count for status, count in statuses.items() if status not in (200, 499)
        )
        + summary["connect_errors"]
        + summary["read_errors"]
        + summary["timeouts"],
    }


def admin_paths(target, session, database, *, duration):
    """The list page and the two searches, timed; each checked once first."""
    with database.connect() as conn:
        # A sign-up from the middle of the table, as the owner would look up.
        email = conn.execute(
            "SELECT email FROM accounts_signup ORDER BY id"
            " OFFSET (SELECT count(*) / 2 FROM accounts_signup) LIMIT 1"
        ).fetchone()[0]
    cases = {
        "admin_list": CHANGELIST,
        "admin_search_email": f"{CHANGELIST}?q={quote(email)}",
        "admin_search_name": f"{CHANGELIST}?q={NAME_FRAGMENT}",
    }
    page = session.get(cases["admin_search_email"]).text
    if email not in page:
        raise RuntimeError(f"the admin search for {email} did not list it")
    if "kowalsk" not in session.get(cases["admin_search_name"]).text.lower():
        raise RuntimeError(f"the admin search for {NAME_FRAGMENT} listed nobody")
    results = {}
    for name, path in cases.items():
        results[name] = time_path(
            target, path, duration=duration, headers=[session.cookie_header]
        )
    results["admin_search_email"]["query"] = email
    results["admin_search_name"]["query"] = NAME_FRAGMENT
    return results


def readiness(target, *, duration):
    """/readyz as the orchestrator asks it, from gunicorn directly."""
    return time_path(target.direct(), "/readyz", duration=duration)


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


def command_export(env, workdir):
    """``manage.py export_signups --output FILE``: wall seconds, the process's
    peak RSS (from wait4) and the rows written."""
    output = Path(workdir) / "export.csv"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "export_signups", "--no-progress", "-o", output],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # wait4 gives the peak RSS of this process alone; a timer bounds the wait.
    deadline = threading.Timer(300, process.kill)
    deadline.start()
    try:
        _pid, status, usage = os.wait4(process.pid, 0)
    finally:
        deadline.cancel()
    wall = time.monotonic() - started
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"export_signups failed or took over 300 s:\n{stderr}")
    with output.open("rb") as csv_file:
        lines = sum(
            chunk.count(b"\n") for chunk in iter(lambda: csv_file.read(1 << 20), b"")
        )
    size = output.stat().st_size
    output.unlink()
    return {
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "bytes": size,
        "rows": lines - 1,
    }


def single_worker(stack, spec, name):
    """Another target like SPEC with one worker that is never replaced, so
    one process serves everything sent to it."""
    return stack.add_target(
        TargetSpec(
            name=name,
            kind=spec.kind,
            env={**spec.env, "WEB_CONCURRENCY": "1", "GUNICORN_MAX_REQUESTS": "0"},
            template=spec.template,
            root=spec.root,
            config=spec.config,
        ),
        name=name,
    )


def admin_export(stack, spec, password):
    """The admin action through nginx, served by a fresh one-worker gunicorn:
    wall seconds and that worker's peak RSS (VmHWM)."""
    target = single_worker(stack, spec, f"{spec.name}-export")
    try:
        session = AdminSession(target, ADMIN_USER, password)
        (worker,) = target.gunicorn.workers()
        before = proc_status(worker, "VmHWM")
        seconds, size, rows = session.export_all()
        peak = proc_status(worker, "VmHWM")
        if target.gunicorn.workers() != [worker]:
            raise RuntimeError("the exporting worker was replaced during the export")
        return {
            "wall_s": seconds,
            "bytes": size,
            "rows": rows,
            "peak_rss_mb": peak,
            "peak_rss_before_mb": before,
        }
    finally:
        target.stop()


def worker_memory(stack, spec, *, requests_wanted, time_limit):
    """GET / and sign-up POSTs, alternately, to a fresh one-worker gunicorn
    until it has served REQUESTS_WANTED (or TIME_LIMIT passed); its RSS then."""
    target = single_worker(stack, spec, f"{spec.name}-memory")
    try:
        (worker,) = target.gunicorn.workers()
        fresh = proc_status(worker, "VmRSS")
        cookie, token = target.csrf_pair()
        started = time.monotonic()
        served = 0
        while served < requests_wanted and time.monotonic() - started < time_limit:
            remaining = time_limit - (time.monotonic() - started)
            run_wrk(
                target,
                "signup.lua",
                (cookie, token, uuid.uuid4().hex[:12], "mixed"),
                duration=max(1, min(5, int(remaining))),
                connections=2,
                headers=[*BROWSER_HEADERS, f"Origin: http://{target.host}"],
            )
            settle(target.gunicorn.access_log.path, quiet=0.2)
            served = len(
                PUBLIC_REQUEST.findall(target.gunicorn.access_log.path.read_text())
            )
        if target.gunicorn.workers() != [worker]:
            raise RuntimeError("the worker was replaced during the measurement")
        return {
            "requests": served,
            "rss_fresh_mb": fresh,
            "rss_mb": proc_status(worker, "VmRSS"),
            "master_rss_mb": proc_status(target.gunicorn.process.pid, "VmRSS"),
        }
    finally:
        target.stop()
