"""Load with wrk and what it did: wrk's summary (wrk/report.lua), the statuses
logged, each process's CPU time per request and, for sign-ups, rows added."""

import json
import re
import resource
import subprocess
import time
from collections import Counter
from pathlib import Path

from loopback.processes import tree_cpu_seconds

WRK_DIR = Path(__file__).resolve().parent / "wrk"
# "GET / HTTP/1.1" 200: the request line and status in both access logs.
REQUEST_STATUS = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) ')
# What a browser sends besides the cookie and form.
BROWSER_HEADERS = (
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Encoding: gzip, deflate",
    "Accept-Language: en-GB,en;q=0.9",
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 "
    "Firefox/128.0",
)
CPU_PARTS = ("app", "nginx", "postgres", "wrk")
MAILS = "SELECT count(*) FROM accounts_outgoingmail"


def run_wrk(url, script, args=(), *, duration, connections, threads=1, headers=()):
    """wrk against URL for DURATION seconds; wrk's summary as a dict."""
    options = f"-t{threads} -c{max(connections, threads)} -d{duration}s --timeout 10s"
    command = ["wrk", *options.split(), "--script", script]
    for header in headers:
        command += ["--header", header]
    command += [url + "/", "--", *args]
    result = subprocess.run(
        command, cwd=WRK_DIR, capture_output=True, text=True, timeout=duration + 60
    )
    summary = re.search(r"^BENCHJSON (.*)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or summary is None:
        raise RuntimeError(
            f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return json.loads(summary.group(1))


class LogSlice:
    """The requests an access log gains from now on."""

    def __init__(self, path):
        self.path = Path(path)
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def statuses(self, method, path):
        """Counter of the statuses of METHOD PATH requests in the slice."""
        with self.path.open("rb") as log:
            log.seek(self.offset)
            lines = log.read().decode(errors="replace").splitlines()
        found = (REQUEST_STATUS.search(line) for line in lines)
        return Counter(
            int(match[3])
            for match in found
            if match and match.group(1, 2) == (method, path)
        )


def settle(path, *, quiet=0.3, timeout=15):
    """Wait until the file at PATH has not grown for QUIET seconds."""
    deadline = time.monotonic() + timeout
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        current = Path(path).stat().st_size
        if current != size:
            size, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)


def measure(target, script, args=(), *, path="/", method="GET", ok=200, **wrk):
    """wrk as a browser at TARGET's host, through nginx (or DIRECT to gunicorn);
    a logged METHOD PATH status other than OK or 499 (cut off by wrk) is an error."""
    url, log = target.url, LogSlice(target.access_log)
    if wrk.pop("direct", False):
        url = f"http://127.0.0.1:{target.gunicorn.port}"
        log = LogSlice(target.gunicorn.access_log.path)
    headers = [f"Host: {target.host}", *BROWSER_HEADERS, *wrk.pop("headers", ())]
    summary = run_wrk(url, script, args, headers=headers, **wrk)
    settle(log.path, quiet=0.1)
    statuses = log.statuses(method, path)
    failed = ("connect_errors", "read_errors", "write_errors", "timeouts")
    return {
        "requests": summary["requests"],
        "rps": summary["requests"] / (summary["duration_us"] / 1e6),
        **{f"p{q}_ms": summary[f"p{q}_us"] / 1000 for q in (50, 90, 99)},
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "errors": sum(summary[name] for name in failed)
        + sum(count for status, count in statuses.items() if status not in (ok, 499)),
        "cut_off": statuses[499],
    }


def cpu_seconds(target, database):
    """CPU seconds so far of TARGET's gunicorn and nginx (each with all their
    processes), of the whole PostgreSQL cluster, and of wrk (our children)."""
    wrk = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "app": target.gunicorn.cpu_seconds(),
        "nginx": tree_cpu_seconds(target.nginx.process.pid),
        "postgres": database.cpu_seconds(),
        "wrk": wrk.ru_utime + wrk.ru_stime,
    }


def run_phase(target, scenario, database, round_number, **wrk):
    """TARGET loaded with SCENARIO: ``get`` (GET / as a first visit) or
    ``post`` (sign-ups, each with a new address); the phase's figures."""
    method, ok, script, args = "GET", 200, "get.lua", ()
    if scenario == "post":
        method, ok, script = "POST", 302, "signup.lua"
        args = target.signup_args()
        wrk["headers"] = [f"Origin: http://{target.host}"]
    served = LogSlice(target.gunicorn.access_log.path)
    rows, mails = database.rows(), database.query(MAILS)
    before = cpu_seconds(target, database)
    phase = {"round": round_number, "scenario": scenario, "target": target.name}
    phase |= measure(target, script, args, method=method, ok=ok, **wrk)
    # Requests wrk cut off may still be running: wait until gunicorn logs the last.
    settle(target.gunicorn.access_log.path)
    after = cpu_seconds(target, database)
    answered = served.statuses(method, "/")
    count = sum(answered.values())
    # CPU per request served: far steadier than req/s on a shared machine.
    for part in CPU_PARTS:
        cpu = (after[part] - before[part]) * 1000
        phase[f"{part}_cpu_ms"] = cpu / count if count else None
    if scenario == "post":
        # Every sign-up the app answered with its redirect, including those
        # whose client had gone (nginx logs 499), must be exactly one new row.
        phase["app_successes"] = answered[ok]
        phase["rows_added"] = database.rows() - rows
        # With double opt-in, each new sign-up queues exactly one mail in the
        # same statement; without it, none. No mailer runs meanwhile.
        phase["mails_queued"] = database.query(MAILS) - mails
        phase["mails_expected"] = phase["rows_added"] if target.spec.confirming else 0
    return phase
