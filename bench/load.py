"""
Load with wrk and what it did: one phase is one wrk run against one target,
read back from wrk's own summary (bench/wrk/report.lua), nginx's and
gunicorn's access logs, and the row count.
"""

import json
import re
import resource
import shutil
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
SCENARIOS = {
    # name: (script, method, path, expected status)
    "get": ("get.lua", "GET", "/", 200),
    "post": ("signup.lua", "POST", "/", 302),
}


def wrk_binary():
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    return path


def wrk_version():
    result = subprocess.run(
        [wrk_binary(), "--version"], capture_output=True, text=True, timeout=10
    )
    return (result.stdout + result.stderr).splitlines()[0].split(" [")[0]


def run_wrk(target, script, args=(), *, duration, connections, threads=1, headers=()):
    """wrk against TARGET for DURATION seconds; wrk's summary as a dict."""
    options = f"-t{threads} -c{max(connections, threads)} -d{duration}s --timeout 10s"
    command = [wrk_binary(), *options.split(), "--script", script]
    for header in (f"Host: {target.host}", *headers):
        command += ["--header", header]
    command += [target.url + "/", "--", *args]
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
    """The lines a log file gains between mark() and read()."""

    def __init__(self, path):
        self.path = Path(path)
        self.offset = self.size()

    def size(self):
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self):
        with self.path.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace").splitlines()

    def statuses(self, method, path):
        """Counter of the statuses of METHOD PATH requests in the slice."""
        counts = Counter()
        for line in self.read():
            match = REQUEST_STATUS.search(line)
            if match and match.group(1) == method and match.group(2) == path:
                counts[int(match.group(3))] += 1
        return counts


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


@dataclass
class Phase:
    """One wrk run against one target, and what the stack saw of it."""

    target: str
    scenario: str
    round: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    statuses: dict
    unexpected: int
    cut_off: int
    app_cpu_ms: float | None = None
    cpu_ms: dict = field(default_factory=dict)
    app_successes: int | None = None
    rows_added: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def errors(self):
        return self.socket_errors + self.unexpected

    @property
    def rows_match(self):
        return self.rows_added is None or self.rows_added == self.app_successes

    def as_dict(self):
        return {**asdict(self), "errors": self.errors, "rows_match": self.rows_match}


def cpu_snapshot(target, database):
    return {
        "app": target.gunicorn.cpu_seconds(),
        "nginx": target.nginx_cpu_seconds(),
        "postgres": database.cpu_seconds(),
    }


def run_phase(
    target,
    scenario,
    *,
    database,
    duration,
    connections,
    threads=1,
    round_number=0,
):
    """Load TARGET with SCENARIO ("get" or "post"); return the Phase."""
    script, method, path, expected = SCENARIOS[scenario]
    args, headers = (), list(BROWSER_HEADERS)
    if scenario == "post":
        cookie, token = target.csrf_pair()
        args = (cookie, token, uuid.uuid4().hex[:12])
        headers.append(f"Origin: http://{target.host}")
    nginx_log = LogSlice(target.nginx_access_log)
    gunicorn_log = LogSlice(target.gunicorn.access_log.path)
    rows_before = database.rows() if scenario == "post" else None
    cpu_before = cpu_snapshot(target, database)

    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = run_wrk(
        target,
        script,
        args,
        duration=duration,
        connections=connections,
        threads=threads,
        headers=headers,
    )
    # Requests wrk cut off when its time was up may still be running in a
    # worker: wait until gunicorn has logged the last one.
    settle(target.gunicorn.access_log.path)
    settle(target.nginx_access_log, quiet=0.1)
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {
        name: seconds - cpu_before[name]
        for name, seconds in cpu_snapshot(target, database).items()
    }
    cpu["wrk"] = (wrk_after.ru_utime + wrk_after.ru_stime) - (
        wrk_before.ru_utime + wrk_before.ru_stime
    )
    served = sum(gunicorn_log.statuses(method, path).values())

    statuses = nginx_log.statuses(method, path)
    seconds = summary["duration_us"] / 1e6
    phase = Phase(
        target=target.name,
        scenario=scenario,
        round=round_number,
        requests=summary["requests"],
        seconds=round(seconds, 3),
        rps=summary["requests"] / seconds if seconds else 0.0,
        p50_ms=summary["p50_us"] / 1000,
        p90_ms=summary["p90_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        max_ms=summary["max_us"] / 1000,
        socket_errors=sum(
            summary[name]
            for name in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        statuses={str(status): count for status, count in sorted(statuses.items())},
        # 499: wrk closed the connection when its time was up; not an error.
        unexpected=sum(
            count for status, count in statuses.items() if status not in (expected, 499)
        ),
        cut_off=statuses.get(499, 0),
        # gunicorn's CPU (master and workers) per request it served: far
        # steadier than req/s on a shared machine.
        app_cpu_ms=cpu["app"] * 1000 / served if served else None,
        # The same for nginx, PostgreSQL and wrk: where the machine's time went.
        cpu_ms={
            name: round(seconds * 1000 / served, 4) if served else None
            for name, seconds in cpu.items()
        },
    )
    if scenario == "post":
        # Every sign-up the app answered with its redirect, including those
        # whose client had gone (nginx logs 499), must be exactly one new row.
        phase.app_successes = gunicorn_log.statuses(method, path).get(expected, 0)
        phase.rows_added = database.rows() - rows_before
    return phase
