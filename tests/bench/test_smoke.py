"""
A few-second run of the benchmark suite (python -m bench --quick), so that it
keeps working. It asserts that the suite measured something and that the
site lost no sign-up under load; never a speed (timings on shared machines
drift too much for that: docs/performance.md has the real figures).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support.commands import PROJECT_ROOT, site_environment


def test_quick_benchmark_run_measures_every_phase_and_loses_no_signup(tmp_path):
    if shutil.which("wrk") is None:
        message = "wrk is not installed (apt-get install wrk; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    results = tmp_path / "bench.json"
    env = site_environment()
    env.pop("DJANGO_SETTINGS_MODULE")

    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(results)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(results.read_text())
    for scenario in ("get", "post"):
        for target in ("site", "ceiling"):
            figures = data["summary"][scenario][target]
            assert figures["requests"] > 0
            assert figures["rps"] > 0
            assert figures["errors"] == 0
            assert figures["rows_match"] is True
    post = data["summary"]["post"]["site"]
    assert post["rows_added"] == post["app_successes"] > 0
    owner = data["owner"]
    for path in ("admin_list", "admin_search_email", "admin_search_name", "readyz"):
        assert owner[path]["requests"] > 0
        assert owner[path]["errors"] == 0
