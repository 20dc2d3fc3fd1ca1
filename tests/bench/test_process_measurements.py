"""
What loopback.processes measures of the processes the benchmark starts:
their CPU time, counting descendants already reaped, and their memory, whose
peak is sampled while it happens.
"""

import subprocess
import sys
import time

import pytest

from loopback.processes import (
    PeakRss,
    children,
    rss_mib,
    stop_process,
    tree_cpu_seconds,
)

# Over half a second of CPU, the interpreter's start included: the kernel
# reports CPU time in whole clock ticks, so a burn of exactly the 0.5 s the
# tests look for can read as 0.49 s.
BURN = "import time\nwhile time.process_time() < 0.6: pass\n"
# A parent whose child burns it and is reaped; the parent waits.
REAPED_CHILD = f"""
import subprocess, sys, time
subprocess.run([sys.executable, "-c", {BURN!r}], check=True)
print("reaped", flush=True)
time.sleep(60)
"""
# A parent whose child burns it and waits.
LIVING_CHILD = f"""
import subprocess, sys
subprocess.run([sys.executable, "-c", {BURN + "time.sleep(60)"!r}])
"""
# A process that holds 300 MiB for a moment, gives it back, and waits.
HOLDS_MEMORY_A_MOMENT = """
import time
print("started", flush=True)
block = b"x" * (300 * 2**20)
time.sleep(0.5)
del block
print("freed", flush=True)
time.sleep(60)
"""


@pytest.fixture
def start():
    """Starts python -c SCRIPT; stopped by its pid after the test."""
    started = []

    def start(script):
        started.append(
            subprocess.Popen(
                [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
            )
        )
        return started[-1]

    yield start
    for process in started:
        stop_process(process, timeout=5)


def test_cpu_time_counts_a_child_that_has_exited(start):
    parent = start(REAPED_CHILD)

    assert parent.stdout.readline() == "reaped\n"
    assert children(parent.pid) == []
    assert tree_cpu_seconds(parent.pid) >= 0.5


def test_cpu_time_counts_a_living_child(start):
    parent = start(LIVING_CHILD)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and tree_cpu_seconds(parent.pid) < 0.5:
        time.sleep(0.05)

    assert len(children(parent.pid)) == 1
    assert tree_cpu_seconds(parent.pid) >= 0.5


def test_the_peak_is_sampled_while_it_lasts(start):
    process = start(HOLDS_MEMORY_A_MOMENT)
    assert process.stdout.readline() == "started\n"

    with PeakRss(process.pid) as peak:
        assert process.stdout.readline() == "freed\n"

    assert peak.mib > 250
    assert rss_mib(process.pid) < 100
    assert rss_mib(2**22 + 12345) is None
