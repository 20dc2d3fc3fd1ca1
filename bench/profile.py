"""
The site's own cost per request, in-process: no nginx, no gunicorn, no load
generator, so the figures hardly drift. A throwaway cluster is started and
migrated; then each variant (a settings module) runs in a child process that
calls the WSGI application with GET / and sign-up POSTs, round after round
(A B A B), and reports the median wall and CPU microseconds per request.
With --profile, one child runs under cProfile and prints where the time goes.
With --instructions, each child runs under valgrind's callgrind instead, which
counts the instructions executed: the same count for the same code whatever
else the machine does, so a change of a few per cent shows up reliably. The
count per request is the difference between a run of N and one of 3N
requests, divided by 2N (start-up and warm-up cancel out).

    python -m bench.profile                                   # the site
    python -m bench.profile --settings bench.site_settings \\
        --settings my_variant_settings                        # compare
    python -m bench.profile --profile --scenario get          # where it goes
    python -m bench.profile --root /tmp/before --root .       # two code trees
    python -m bench.profile --root /tmp/before --root . --instructions
"""

import argparse
import cProfile
import io
import json
import pstats
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

PUBLIC_HOST = "localhost:8080"


def child(scenario, requests, profile, top):
    import django
    from django.core.wsgi import get_wsgi_application

    django.setup()
    application = get_wsgi_application()
    csrf_field = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')

    def call(environ):
        status = []

        def start_response(line, headers, exc_info=None):
            status.append((line, headers))

        body = b"".join(application(environ, start_response))
        return status[0][0], dict(status[0][1]), body

    def base(method, path="/"):
        return {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "8080",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": PUBLIC_HOST,
            "HTTP_ACCEPT": "text/html",
            "HTTP_ACCEPT_ENCODING": "gzip, deflate",
            "HTTP_USER_AGENT": "Mozilla/5.0 bench",
            "HTTP_X_FORWARDED_FOR": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }

    line, headers, body = call(base("GET"))
    assert line.startswith("200"), line
    cookie = re.search(r"csrftoken=([^;]+)", headers["Set-Cookie"]).group(1)
    token = csrf_field.search(body).group(1).decode()
    tag = uuid.uuid4().hex[:10]

    def make(number):
        if scenario == "get":
            return base("GET")
        data = (
            f"csrfmiddlewaretoken={token}&name=Ada+Lovelace"
            f"&email=ada.{tag}.{number}%40example.com"
        ).encode()
        environ = base("POST")
        environ.update(
            {
                "CONTENT_TYPE": "application/x-www-form-urlencoded",
                "CONTENT_LENGTH": str(len(data)),
                "HTTP_COOKIE": f"csrftoken={cookie}",
                "HTTP_ORIGIN": f"http://{PUBLIC_HOST}",
                "wsgi.input": io.BytesIO(data),
            }
        )
        return environ

    expected = "200" if scenario == "get" else "302"
    for number in range(min(200, requests)):  # warm-up
        line, _, _ = call(make(-number - 1))
        assert line.startswith(expected), line
    environs = [make(number) for number in range(requests)]
    walls, cpus = [], []
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    for environ in environs:
        wall, cpu = time.perf_counter(), time.process_time()
        line, _, _ = call(environ)
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
        if not line.startswith(expected):
            raise RuntimeError(f"{scenario}: {line}")
    if profiler:
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
    print(
        json.dumps(
            {
                "wall_us": statistics.median(walls) * 1e6,
                "cpu_us": sum(cpus) / len(cpus) * 1e6,
                "requests": requests,
            }
        )
    )


CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
CALLGRIND_TOTAL = re.compile(r"^==\d+== Collected : (\d+)$", re.MULTILINE)


def child_command(scenario, requests, top, *, profile=False):
    command = [sys.executable, "-m", "bench.profile", "--child"]
    command += ["--scenario", scenario, "--requests", str(requests), "--top", str(top)]
    return [*command, "--profile"] if profile else command


def run_child(command, *, env, root, timeout):
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, cwd=root
    )
    if result.returncode != 0:
        raise RuntimeError(result.stdout + result.stderr)
    return result


def instructions(scenario, requests, *, env, root):
    """Instructions one request costs, counted by callgrind (see above)."""
    totals = []
    for count in (requests, 3 * requests):
        result = run_child(
            [*CALLGRIND, *child_command(scenario, count, top=0)],
            # Same hashing, so the same dict layouts, in every run.
            env={**env, "PYTHONHASHSEED": "0"},
            root=root,
            timeout=1800,
        )
        totals.append(int(CALLGRIND_TOTAL.search(result.stderr).group(1)))
    return (totals[1] - totals[0]) / (2 * requests)


def parent(options):
    from bench.stack import Stack
    from loopback.processes import PROJECT_ROOT

    if options.instructions:
        # Warm-up is min(200, N) requests: equal for both runs from N=200.
        options.requests = max(options.requests, 200)
        options.rounds = 1
    with Stack([]) as stack:
        results = {}
        for round_number in range(options.rounds):
            for settings, root in options.variants:
                for scenario in options.scenario:
                    env = {
                        **stack.base_env,
                        "DJANGO_SETTINGS_MODULE": settings,
                        "DJANGO_PUBLIC_URL": f"http://{PUBLIC_HOST}",
                    }
                    label = settings if root == PROJECT_ROOT else str(root)
                    if options.instructions:
                        count = instructions(
                            scenario, options.requests, env=env, root=root
                        )
                        print(f"{scenario:4} {label:40} {count:12,.0f} instructions")
                        continue
                    profile = options.profile and round_number == 0
                    command = child_command(
                        scenario, options.requests, options.top, profile=profile
                    )
                    result = run_child(command, env=env, root=root, timeout=600)
                    if profile:
                        print(f"==== {label} {scenario}\n{result.stderr}")
                    figures = json.loads(result.stdout.strip().splitlines()[-1])
                    results.setdefault((label, scenario), []).append(figures)
                    print(
                        f"round {round_number + 1} {scenario:4} {label:40} "
                        f"wall {figures['wall_us']:7.0f} us  "
                        f"cpu {figures['cpu_us']:7.0f} us",
                        flush=True,
                    )
        if not results:
            return
        print("\nmedians over rounds:")
        for (label, scenario), runs in results.items():
            wall = statistics.median(run["wall_us"] for run in runs)
            cpu = statistics.median(run["cpu_us"] for run in runs)
            print(f"  {scenario:4} {label:40} wall {wall:7.0f} us  cpu {cpu:7.0f} us")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--settings", action="append", help="a settings module")
    parser.add_argument("--root", action="append", help="a copy of the project")
    parser.add_argument("--scenario", action="append", choices=("get", "post"))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per request with callgrind (slow, steady)",
    )
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    options.scenario = options.scenario or ["get", "post"]
    if options.child:
        child(options.scenario[0], options.requests, options.profile, options.top)
    else:
        from loopback.processes import PROJECT_ROOT

        options.variants = [
            (settings, PROJECT_ROOT) for settings in options.settings or []
        ]
        options.variants += [
            ("bench.site_settings", Path(root).resolve()) for root in options.root or []
        ]
        options.variants = options.variants or [("bench.site_settings", PROJECT_ROOT)]
        parent(options)


if __name__ == "__main__":
    main()
