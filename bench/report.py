"""
What a run found: the machine and versions, medians over rounds, the
site-to-ceiling ratios paired by round, the targets of the issue met or
not, as JSON and as the Markdown of docs/performance.md.
"""

import os
import platform
import re
import statistics
import subprocess
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench.load import wrk_version
from loopback.nginx import NGINX_BINARY

# The targets, on this machine type, in one run.
CPU_PARTS = ("app", "nginx", "postgres", "wrk")
RATIOS = (("rps", "rps_ratio"), ("p99_ms", "p99_ratio"), ("app_cpu_ms", "cpu_ratio"))
GUNICORN_KEYS = ("workers", "worker_class", "max_requests", "max_requests_jitter")
RATIO_MIN = 0.40  # site req/s over the ceiling's
P99_RATIO_MAX = 3.0  # site p99 over the ceiling's
# key, the figure it reads, limit and unit, what it is.
OWNER_LIMITS = {
    key: (what, float(limit), unit, figure)
    for key, figure, limit, unit, what in (
        line.split(maxsplit=4)
        for line in """
admin_list p50_ms 150 ms Admin list page, p50
admin_search_email p50_ms 50 ms Admin search by a full email, p50
admin_search_name p50_ms 300 ms Admin search by part of a name, p50
readyz p50_ms 5 ms `/readyz`, p50
admin_export wall_s 15 s CSV export of all rows (admin action), wall
admin_export_rss peak_rss_mb 150 MB CSV export (admin action), the worker's peak RSS
command_export wall_s 15 s CSV export of all rows (`export_signups`), wall
command_export_rss peak_rss_mb 150 MB CSV export (`export_signups`), the process's peak RSS
bootstrap median_s 1 s `bootstrap` on a ready database, median wall
worker_memory rss_mb 80 MB A worker's RSS after the public requests
""".strip().splitlines()  # noqa: E501 (one limit a line)
    )
}


def _run(*command):
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (result.stdout + result.stderr).strip()


def machine():
    cpu = "unknown"
    try:
        match = re.search(
            r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE
        )
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, TypeError):
        memory = "unknown"
    try:
        debian = "Debian " + Path("/etc/debian_version").read_text().strip()
    except OSError:
        debian = platform.platform()
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "unknown"
    return {
        "load_average": load,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": debian,
        "kernel": platform.release(),
    }


def versions(database):
    return {
        "python": platform.python_version(),
        "django": version("django"),
        "gunicorn": version("gunicorn"),
        "psycopg": version("psycopg"),
        "postgresql": database.query("SHOW server_version"),
        "nginx": _run(str(NGINX_BINARY), "-v").removeprefix("nginx version: "),
        "wrk": wrk_version(),
    }


def gunicorn_settings(target):
    """The settings gunicorn would run TARGET with (``--print-config``)."""
    result = subprocess.run(
        [*target.gunicorn.command[:-1], "--print-config"],
        env=target.env,
        cwd=target.gunicorn.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    printed = dict(re.findall(r"^(\w+)\s+= (.*)$", result.stdout, re.MULTILINE))
    keys = (
        "workers",
        "worker_class",
        "threads",
        "max_requests",
        "max_requests_jitter",
        "preload_app",
        "timeout",
        "keepalive",
    )
    return {key: printed.get(key, "?") for key in keys}


def _median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def paired(phases, phase, other, key):
    """PHASE's KEY over OTHER target's KEY in the same round and scenario."""
    pair = next(
        (
            p
            for p in phases
            if p.target == other
            and p.scenario == phase.scenario
            and p.round == phase.round
        ),
        None,
    )
    mine, theirs = getattr(phase, key), pair and getattr(pair, key)
    return mine / theirs if mine and theirs else None


def summarize(phases, targets, ceiling):
    """Per scenario and target: medians over rounds, the ratios to CEILING's
    phase of the same round and to the first target's (medians over rounds)."""
    summary = {}
    for scenario in ("get", "post"):
        per_target = {}
        for target in targets:
            mine = [p for p in phases if p.target == target and p.scenario == scenario]
            if not mine:
                continue
            entry = {
                "rounds": len(mine),
                "rps": _median([p.rps for p in mine]),
                "p50_ms": _median([p.p50_ms for p in mine]),
                "p90_ms": _median([p.p90_ms for p in mine]),
                "p99_ms": _median([p.p99_ms for p in mine]),
                "app_cpu_ms": _median([p.app_cpu_ms for p in mine]),
                "cpu_ms": {
                    part: _median([p.cpu_ms.get(part) for p in mine])
                    for part in CPU_PARTS
                },
                "requests": sum(p.requests for p in mine),
                "errors": sum(p.errors for p in mine),
                "cut_off": sum(p.cut_off for p in mine),
                "rows_match": all(p.rows_match for p in mine),
            }
            if scenario == "post":
                entry["app_successes"] = sum(p.app_successes for p in mine)
                entry["rows_added"] = sum(p.rows_added for p in mine)
            if ceiling and target != ceiling:
                for key, name in RATIOS:
                    ratios = [paired(phases, p, ceiling, key) for p in mine]
                    entry[f"{name}s"] = [r for r in ratios if r is not None]
                    entry[name] = _median(ratios)
            if target != targets[0]:
                entry["vs_first"] = {
                    key: _median([paired(phases, p, targets[0], key) for p in mine])
                    for key in ("rps", "p99_ms", "app_cpu_ms")
                }
            per_target[target] = entry
        summary[scenario] = per_target
    return summary


def owner_value(owner, key):
    item = owner.get(key.removesuffix("_rss"))
    if not item:
        return None
    return item.get(OWNER_LIMITS[key][3])


def checks(results):
    """[(what, measured text, limit text, met)] for every target of the issue."""
    rows = []
    site = results.get("site")
    summary = results.get("summary", {})
    for scenario, label in (("get", "`GET /`"), ("post", "Sign-up `POST /`")):
        entry = summary.get(scenario, {}).get(site)
        if not entry or entry.get("rps_ratio") is None:
            continue
        rows.append(
            (
                f"{label}: req/s over the ceiling's",
                f"{entry['rps_ratio']:.2f}",
                f"≥ {RATIO_MIN:.2f}",
                entry["rps_ratio"] >= RATIO_MIN,
            )
        )
        rows.append(
            (
                f"{label}: p99 over the ceiling's",
                f"{entry['p99_ratio']:.2f}x",
                f"≤ {P99_RATIO_MAX:.0f}x",
                entry["p99_ratio"] <= P99_RATIO_MAX,
            )
        )
        rows.append(
            (f"{label}: errors", str(entry["errors"]), "0", entry["errors"] == 0)
        )
        if scenario == "post":
            rows.append(
                (
                    "Rows added = sign-ups answered with the redirect",
                    f"{entry['rows_added']:,} = {entry['app_successes']:,}",
                    "equal",
                    entry["rows_match"],
                )
            )
    owner = results.get("owner") or {}
    for key, (what, limit, unit, _path) in OWNER_LIMITS.items():
        value = owner_value(owner, key)
        if value is None:
            continue
        rows.append(
            (what, f"{value:,.1f} {unit}", f"< {limit:g} {unit}", value < limit)
        )
    return rows


def _fmt(value, digits=1):
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(results):
    meta = results["meta"]
    out = []
    add = out.append
    add("# Performance")
    add("")
    add(
        "The sign-up site against its own ceiling, measured by the benchmark "
        "suite in `bench/`. Timings on these shared machines drift by up to "
        "30 % within minutes, so what matters are the ratios of one run: the "
        "site and the ceiling app take turns (A B A B) under the same load, "
        "behind the same nginx, with the same gunicorn settings and the same "
        "PostgreSQL. This file is written by the run it describes."
    )
    add("")
    add("```sh")
    add(results["command"])
    add("```")
    add("")
    add(f"Run on {results['started']} ({results['wall_s'] / 60:.1f} min).")
    add("")
    add("## How to run it")
    add("")
    add(
        "`.venv/bin/python -m bench` (about ten minutes) writes this file; "
        "`--quick` is the few-second smoke run CI does (`tests/bench`); "
        "`--help` lists the rest. It needs Debian's `nginx` and `wrk` and "
        "the PostgreSQL server binaries, and listens on 127.0.0.1 only. "
        "`--target NAME=site,VAR=VALUE` adds a variant of the site to the "
        "same interleaved run (an environment variable, a settings module, "
        "`config=` another gunicorn config, `root=` another copy of the code "
        "such as a git worktree of an earlier commit), which is how each "
        "change was measured "
        "against what it replaced. `python -m bench.profile` times the site "
        "in-process (steadier; with `--instructions` it counts instructions "
        "per request with callgrind, which repeat within 0.01 %), and "
        "`python -m bench.queries` prints every "
        "statement of the owner's pages with its plan."
    )
    add("")
    add(
        "Besides req/s and latency, each phase reports the CPU time per "
        "request of each process: gunicorn (master and workers), nginx, the "
        "PostgreSQL cluster and wrk. CPU time drifts far less than req/s on "
        "a shared machine, and it shows where the difference to the ceiling "
        "is spent."
    )
    add("")
    add("## Machine and versions")
    add("")
    add("| | |")
    add("| --- | --- |")
    machine_ = meta["machine"]
    add(f"| CPU | {machine_['cpu']}, {machine_['cores']} cores |")
    add(f"| Memory | {machine_['memory']} |")
    add(f"| OS | {machine_['os']}, Linux {machine_['kernel']} |")
    add(
        f"| Load average (1, 5, 15 min) | {machine_['load_average']} at the start, "
        f"{meta.get('load_average_end', '?')} at the end |"
    )
    for name, value in meta["versions"].items():
        add(f"| {name} | {value} |")
    add("")
    add("## Settings")
    add("")
    options = results["options"]
    add(
        f"- Load: wrk, {options['threads']} thread, {options['connections']} "
        f"connections, {options['duration']} s per phase after "
        f"{options['warmup']} s of warm-up, {options['rounds']} rounds; browser "
        "headers (Accept-Encoding: gzip, so nginx compresses as it would for "
        "people). `GET /` as a first visit (no cookie); sign-up POSTs with a "
        "new address each, all with one CSRF cookie and form token, Origin "
        "and Host as a browser at `http://localhost:<port>` sends them."
    )
    add(
        "- nginx: the project's template (`docker/nginx/default.conf.template`) in the "
        "official image's nginx.conf (`worker_processes auto`), rendered as "
        "the serving tests render it, with envsubst (rate limits lifted: every "
        "request comes from 127.0.0.1), one nginx per target; upstream `web` "
        "resolved by the stand-in for Docker's DNS (`loopback/dns.py`)."
    )
    add(
        "- PostgreSQL: a throwaway cluster (`loopback/postgres.py`), "
        + ", ".join(f"{key}={value}" for key, value in meta["postgresql"].items())
        + "; the site's role and database, reached over TCP with a password."
    )
    add(
        "- gunicorn: `docker/web/gunicorn.conf.py`, which loads the site in the "
        "master before forking (preload_app); as "
        "each target ran it (`--print-config`):"
    )
    add("")
    keys = [key for key in GUNICORN_KEYS if key in results["targets"][0]["gunicorn"]]
    add("| Target | App and overrides | " + " | ".join(keys) + " |")
    add("| --- | --- | " + " | ".join("---" for _ in keys) + " |")
    for target in results["targets"]:
        values = [str(target["gunicorn"][key]) for key in keys]
        add(f"| {target['name']} | {target['describe']} | " + " | ".join(values) + " |")
    add("")

    add("## Site and ceiling")
    add("")
    add(
        "Medians over rounds. Ratios pair each round's phase with the "
        "ceiling's phase of the same round, then take the median."
    )
    for scenario, title in (("get", "`GET /`"), ("post", "Sign-up `POST /`")):
        entries = results["summary"].get(scenario)
        if not entries:
            continue
        add("")
        add(f"### {title}")
        add("")
        add(
            "| Target | req/s | p50 ms | p90 ms | p99 ms | errors "
            "| req/s ÷ ceiling | p99 ÷ ceiling | app CPU ms/req | CPU ÷ ceiling |"
        )
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, entry in entries.items():
            add(
                f"| {name} | {_fmt(entry['rps'], 0)} | {_fmt(entry['p50_ms'], 2)} "
                f"| {_fmt(entry['p90_ms'], 2)} | {_fmt(entry['p99_ms'], 2)} "
                f"| {entry['errors']} | {_fmt(entry.get('rps_ratio'), 2)} "
                f"| {_fmt(entry.get('p99_ratio'), 2)} "
                f"| {_fmt(entry.get('app_cpu_ms'), 3)} "
                f"| {_fmt(entry.get('cpu_ratio'), 2)} |"
            )
        add("")
        add(
            "CPU milliseconds per request, by process (gunicorn master and "
            "workers; nginx; the whole PostgreSQL cluster; wrk):"
        )
        add("")
        add("| Target | " + " | ".join(CPU_PARTS) + " | total |")
        add("| --- | " + " | ".join("---:" for _ in CPU_PARTS) + " | ---: |")
        for name, entry in entries.items():
            parts = [entry["cpu_ms"].get(part) for part in CPU_PARTS]
            total = sum(part for part in parts if part is not None)
            add(
                f"| {name} | "
                + " | ".join(_fmt(part, 3) for part in parts)
                + f" | {total:.3f} |"
            )
        if scenario == "post":
            add("")
            for name, entry in entries.items():
                add(
                    f"- {name}: {entry['rows_added']:,} rows added, "
                    f"{entry['app_successes']:,} sign-ups answered with the "
                    f"redirect ({'equal' if entry['rows_match'] else 'NOT EQUAL'}); "
                    f"{entry['cut_off']} requests were still running when wrk "
                    "stopped (nginx logged 499; the app finished them)."
                )
    add("")
    add("### Every phase")
    add("")
    add(
        "| Round | Scenario | Target | req/s | p50 ms | p90 ms | p99 ms | errors "
        "| app CPU ms/req |"
    )
    add("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for phase in results["phases"]:
        add(
            f"| {phase['round']} | {phase['scenario']} | {phase['target']} "
            f"| {phase['rps']:,.0f} | {phase['p50_ms']:.2f} | {phase['p90_ms']:.2f} "
            f"| {phase['p99_ms']:.2f} | {phase['errors']} "
            f"| {_fmt(phase['app_cpu_ms'], 3)} |"
        )

    owner = results.get("owner")
    if owner:
        add("")
        add(f"## The owner's paths at {owner['rows']:,} sign-ups")
        add("")
        load = owner["load"]
        add(
            f"Loaded with `bench/loader.py` (one COPY, indexes rebuilt after): "
            f"{load['rows']:,} rows in {load['copy_s']:.1f} s, indexes "
            f"{load['index_s']:.1f} s, VACUUM ANALYZE {load['vacuum_s']:.1f} s, "
            f"{load['total_s']:.1f} s in all. Table and indexes: "
            f"{owner['table_size']}. Timed with the "
            f"`{owner['target']}` target, one request after another for "
            f"{options['owner_duration']} s each."
        )
        add("")
        add("| Path | requests | p50 ms | p90 ms | p99 ms | errors |")
        add("| --- | ---: | ---: | ---: | ---: | ---: |")
        for key in ("admin_list", "admin_search_email", "admin_search_name", "readyz"):
            item = owner.get(key)
            if item:
                add(
                    f"| `{item['path']}` | {item['requests']} "
                    f"| {item['p50_ms']:.2f} | {item['p90_ms']:.2f} "
                    f"| {item['p99_ms']:.2f} | {item['errors']} |"
                )
        add("")
        for key, label in (
            ("admin_export", "Admin action, through nginx, one fresh worker"),
            ("command_export", "`manage.py export_signups --output FILE`"),
        ):
            item = owner.get(key)
            if item:
                add(
                    f"- CSV export, {label}: {item['rows']:,} rows, "
                    f"{item['bytes'] / 1e6:.1f} MB in {item['wall_s']:.1f} s; "
                    f"peak RSS {item['peak_rss_mb']:.0f} MB."
                )
        item = owner.get("bootstrap")
        if item:
            walls = ", ".join(f"{wall:.2f}" for wall in item["wall_s"])
            add(
                f"- `bootstrap` on the ready database: median {item['median_s']:.2f} s "
                f"wall over {item['runs']} runs ({walls} s), Python start-up included."
            )
        item = owner.get("worker_memory")
        if item:
            add(
                f"- A worker's RSS: {item['rss_fresh_mb']:.1f} MB fresh, "
                f"{item['rss_mb']:.1f} MB after {item['requests']:,} requests "
                f"(GET / and sign-up POSTs, alternately); master "
                f"{item['master_rss_mb']:.1f} MB."
            )

    add("")
    add("## Targets")
    add("")
    add("| Target | Measured | Limit | Met |")
    add("| --- | ---: | ---: | --- |")
    for what, measured, limit, met in checks(results):
        add(f"| {what} | {measured} | {limit} | {'yes' if met else '**no**'} |")
    notes = results.get("notes")
    if notes:
        add("")
        add("## Notes")
        add("")
        for note in notes:
            add(f"- {note}")
    add("")
    return "\n".join(out)


def shown_arguments(argv):
    """ARGV without what only this run needs (--json PATH, --note TEXT)."""
    shown, skip = [], False
    for argument in argv:
        if skip:
            skip = False
        elif argument in ("--json", "--note"):
            skip = True
        elif not argument.startswith(("--json=", "--note=")):
            shown.append(argument)
    return shown


def main(argv=None):
    """Write the Markdown of a run's JSON again (after a change to this file)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("json", type=Path, help="a run's --json output")
    parser.add_argument("markdown", type=Path, help="where to write the report")
    options = parser.parse_args(argv)
    results = json.loads(options.json.read_text())
    options.markdown.write_text(markdown(results))


def now_text():
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


if __name__ == "__main__":
    main()
