"""
.github/workflows, checked here because nothing here can run them: what the
workflow must do (the README's test command on every push, the two images for
two platforms pushed to ghcr.io on a version tag, under the names the
Kubernetes overlay runs). GitHub's workflow schema and zizmor, linters, run
through pre-commit (.pre-commit-config.yaml).
"""

import re
import subprocess

import pytest
import yaml

from tests.deploy import kubernetes as k8s
from tests.support.commands import PROJECT_ROOT

WORKFLOWS_DIR = PROJECT_ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.y*ml"))
CI = WORKFLOWS_DIR / "ci.yml"
PINNED_USES = re.compile(
    r"^\s*(?:-\s+)?uses:\s+[\w.-]+/[\w./-]+@[0-9a-f]{40}\s+#\s+v\d+\.\d+\.\d+\s*$"
)


def load(path):
    workflow = yaml.safe_load(path.read_text())
    # YAML 1.1, which PyYAML reads, makes the key `on` a boolean.
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def test_there_is_a_workflow():
    assert CI in WORKFLOWS


def test_every_action_is_pinned_to_a_commit_with_its_version_in_a_comment():
    for path in WORKFLOWS:
        uses = [line for line in path.read_text().splitlines() if "uses:" in line]
        assert uses
        for line in uses:
            assert PINNED_USES.match(line), line


def steps_of(job):
    return job.get("steps", [])


def test_every_push_and_pull_request_runs_the_readmes_test_command():
    workflow = load(CI)
    readme = (PROJECT_ROOT / "README.md").read_text()
    job = workflow["jobs"]["test"]

    assert "push" in workflow["on"]
    assert "pull_request" in workflow["on"]
    assert workflow["on"]["push"]["branches"] == ["**"]
    assert "`.ci/run`" in readme
    runs = [step["run"] for step in steps_of(job) if "run" in step]
    assert runs[-2:] == ["bash .ci/github-machine", "bash .ci/run"]
    assert (PROJECT_ROOT / ".ci" / "github-machine").is_file()
    assert job["env"]["SIGNUP_TEST_IMAGES"] == "official"
    assert job["permissions"] == {"contents": "read"}
    assert "if" not in job


def test_a_version_tag_publishes_both_images_for_two_platforms_after_the_tests():
    workflow = load(CI)
    job = workflow["jobs"]["publish"]
    meta = next(step for step in steps_of(job) if step.get("id") == "meta")
    build = next(
        step
        for step in steps_of(job)
        if "docker/build-push-action" in step.get("uses", "")
    )

    assert workflow["on"]["push"]["tags"] == ["v*"]
    assert job["needs"] == "test"
    assert "startsWith(github.ref, 'refs/tags/v')" in job["if"]
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    assert sorted(job["strategy"]["matrix"]["target"]) == ["nginx", "web"]
    assert build["with"]["target"] == "${{ matrix.target }}"
    assert build["with"]["file"] == "docker/Dockerfile"
    assert build["with"]["platforms"].split(",") == ["linux/amd64", "linux/arm64"]
    assert build["with"]["push"] is True
    assert "docker/metadata-action" in meta["uses"]
    assert meta["with"]["images"] == "${{ steps.image.outputs.name }}"
    assert build["with"]["tags"] == "${{ steps.meta.outputs.tags }}"
    assert build["with"]["labels"] == "${{ steps.meta.outputs.labels }}"
    dockerfile = (PROJECT_ROOT / "docker" / "Dockerfile").read_text()
    for target in job["strategy"]["matrix"]["target"]:
        assert f" AS {target}\n" in dockerfile


def test_the_publishing_job_uses_no_cache_and_keeps_no_credentials():
    workflow = load(CI)
    for job in workflow["jobs"].values():
        for step in steps_of(job):
            if "actions/checkout" in step.get("uses", ""):
                assert step["with"]["persist-credentials"] is False
    publish = steps_of(workflow["jobs"]["publish"])
    for step in publish:
        inputs = step.get("with", {})
        assert not {"cache-from", "cache-to"} & inputs.keys()
        assert "actions/cache" not in step.get("uses", "")
        if "docker/setup-buildx-action" in step.get("uses", ""):
            assert inputs["cache-binary"] is False


def published_name(owner_and_repository, target, output):
    """The image name the publishing job computes, run as GitHub would."""
    workflow = load(CI)
    step = next(
        step
        for step in steps_of(workflow["jobs"]["publish"])
        if step.get("id") == "image"
    )
    subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        env={
            "REPOSITORY": owner_and_repository,
            "TARGET": target,
            "GITHUB_OUTPUT": str(output),
        },
        check=True,
        timeout=30,
    )
    name = output.read_text().strip().removeprefix("name=")
    output.unlink()
    return name


def test_the_published_names_are_lower_case_and_the_ones_the_overlay_runs(tmp_path):
    output = tmp_path / "github-output"
    kustomization = k8s.kustomization(k8s.EXAMPLE)
    overlay_names = {image["newName"] for image in kustomization["images"]}

    assert (
        published_name("Example/Signup", "web", output) == "ghcr.io/example/signup/web"
    )
    assert {published_name("example/signup", t, output) for t in ("web", "nginx")} == (
        overlay_names
    )


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_no_expression_is_expanded_inside_a_shell_script(path):
    """${{ }} inside run: is template injection; values come in through env."""
    for job in load(path)["jobs"].values():
        for step in steps_of(job):
            assert "${{" not in step.get("run", ""), step.get("name")
