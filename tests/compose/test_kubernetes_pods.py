"""
The site's images run the way deploy/kubernetes runs them, in the real engine.
Each container of the rendered example overlay gets what its pod spec says:
command, environment (ConfigMaps and Secrets included), user, read-only root,
no capabilities, no privilege escalation, the pod's sysctls, emptyDirs as
tmpfs and the Secret as read-only files. The init container migrates, web
answers its probes, the mailer answers its heartbeat probes and exits 0 on
SIGTERM, and nginx finds web by the Service's fully qualified name through the
DNS server of its resolv.conf (NGINX_RESOLVER=local), then quits gracefully
from its preStop command.

No cluster: Docker stands in for the kubelet, on one network where web's alias
is its cluster name, and PostgreSQL is a container playing the external
database.
"""

import base64
import json
import os
import time

import pytest
import requests

from tests.compose import engine, images
from tests.deploy import kubernetes as k8s
from tests.support.commands import site_environment

pytestmark = pytest.mark.engine

NAMESPACE = "shop"
DATABASE_HOST = "postgres.shop-db.example"
DATABASE_PASSWORD = "k8s pod test password"
# The overlay turns mail on: the SMTP server's URL is a secret file too. No
# mail is queued here, so the mailer never connects to it.
EMAIL_URL = "smtp+tls://signup:mail%20password@smtp.shop.example:587"


def wait_until(condition, *, timeout, what, container):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    logs = engine.docker("logs", "--tail", "30", container, check=False)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what}; its log:\n"
        + logs.stdout
        + logs.stderr
    )


@pytest.fixture
def pod_specs(tmp_path):
    """The example overlay rendered with its database pointing at the test's
    PostgreSQL container: {workload: (pod spec, {name: value} of the
    ConfigMaps and Secrets)}."""
    kubectl = k8s.kubectl_or_unavailable()
    root = tmp_path / "kubernetes"
    root.mkdir()
    k8s.copy_manifests(root)
    overlay = root / k8s.EXAMPLE
    (overlay / "database.env").write_text(
        f"POSTGRES_HOST={DATABASE_HOST}\nPOSTGRES_PORT=5432\n"
        "POSTGRES_USER=signup\nPOSTGRES_DB=signup\n"
    )
    (overlay / "secrets" / "postgres-password").write_text(DATABASE_PASSWORD)
    (overlay / "secrets" / "email-url").write_text(EMAIL_URL + "\n")
    objects = k8s.render(kubectl, root, k8s.EXAMPLE)
    sources = {}
    for config_map in k8s.of_kind(objects, "ConfigMap"):
        sources[config_map["metadata"]["name"]] = config_map["data"]
    for secret in k8s.of_kind(objects, "Secret"):
        sources[secret["metadata"]["name"]] = {
            key: base64.b64decode(value).decode()
            for key, value in secret["data"].items()
        }
    return {workload: (pod, sources) for workload, pod in k8s.pod_specs(objects)}


def docker_run_options(pod, sources, container, tmp_path):
    """`docker run` options doing what the kubelet does for CONTAINER."""
    context = {**pod.get("securityContext", {}), **container["securityContext"]}
    user = context["runAsUser"]
    options = ["--user", f"{user}:{context.get('runAsGroup', user)}"]
    if "fsGroup" in context:
        options += ["--group-add", str(context["fsGroup"])]
    if context["readOnlyRootFilesystem"]:
        options.append("--read-only")
    for capability in context["capabilities"]["drop"]:
        options += ["--cap-drop", capability]
    if context["allowPrivilegeEscalation"] is False:
        options += ["--security-opt", "no-new-privileges"]
    for sysctl in pod.get("securityContext", {}).get("sysctls", []):
        options += ["--sysctl", f"{sysctl['name']}={sysctl['value']}"]
    environment = {}
    for source in container.get("envFrom", []):
        reference = source.get("configMapRef") or source.get("secretRef")
        environment.update(sources[reference["name"]])
    environment.update(
        k8s.expand_env(container.get("env", []), **{"metadata.namespace": NAMESPACE})
    )
    for name, value in environment.items():
        options += ["--env", f"{name}={value}"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            # An emptyDir is a new directory anyone may write to (0777). Over a
            # directory of the image, Docker gives the tmpfs that directory's
            # owner and mode instead, so it is handed to the container's user.
            group = context.get("runAsGroup", user)
            options += ["--tmpfs", f"{mount['mountPath']}:uid={user},gid={group}"]
        elif "secret" in volume:
            # Files as the kubelet writes them: root-owned, group fsGroup.
            directory = tmp_path / f"secret-{mount['name']}"
            directory.mkdir(exist_ok=True)
            for key, value in sources[volume["secret"]["secretName"]].items():
                path = directory / key
                path.write_text(value)
                os.chown(path, 0, pod["securityContext"]["fsGroup"])
                path.chmod(volume["secret"]["defaultMode"])
            options += [
                "--mount",
                f"type=bind,source={directory},target={mount['mountPath']},readonly",
            ]
        else:
            raise AssertionError(f"no stand-in for volume {volume}")
    return options


@pytest.fixture
def site_images(compose_project, docker_names):
    """web and nginx built from docker/Dockerfile as Compose builds them,
    under names of this test (removed with its other Docker objects)."""
    project = compose_project(
        label="k8simages",
        env={
            **site_environment(),
            # A localhost/ name: no registry serves it, and it is this test's own.
            "SIGNUP_REGISTRY": f"localhost/{docker_names.prefix}",
            "SIGNUP_VERSION": "test",
        },
    )
    project("build", "web", "nginx", timeout=900)
    services = json.loads(project("config", "--format", "json").stdout)["services"]
    built = {
        name: services[name].get("image", f"{project.name}-{name}")
        for name in ("web", "nginx")
    }
    docker_names.images.extend(built.values())
    return built


def test_the_images_run_as_the_kubernetes_pods_run_them(
    pod_specs, site_images, docker_names, tmp_path
):
    network = docker_names.network("k8s")
    engine.docker("network", "create", network)
    database = docker_names.container("db")
    engine.docker(
        *("run", "--detach", "--name", database, "--network", network),
        *("--network-alias", DATABASE_HOST),
        *("--env", "POSTGRES_USER=signup", "--env", "POSTGRES_DB=signup"),
        *("--env", f"POSTGRES_PASSWORD={DATABASE_PASSWORD}"),
        images.image_for("postgres"),
    )

    web_pod, sources = pod_specs["web"]
    [migrate] = web_pod["initContainers"]
    [web] = web_pod["containers"]
    web_options = docker_run_options(web_pod, sources, web, tmp_path)
    migrated = engine.docker(
        *("run", "--rm", "--network", network),
        *docker_run_options(web_pod, sources, migrate, tmp_path),
        site_images["web"],
        *migrate["command"],
        check=False,
        timeout=300,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr

    web_name = docker_names.container("web")
    engine.docker(
        *("run", "--detach", "--name", web_name, "--network", network),
        *("--network-alias", f"web.{NAMESPACE}.svc.cluster.local"),
        *web_options,
        site_images["web"],
        *web["command"],
    )

    def probe(path):
        result = engine.docker(
            *("exec", web_name, "python", "-c"),
            "import sys, urllib.request; "
            f"sys.exit(urllib.request.urlopen('http://127.0.0.1:8000{path}', "
            "timeout=4).status != 200)",
            check=False,
        )
        return result.returncode == 0

    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = web[kind]["httpGet"]["path"]
        wait_until(
            lambda path=path: probe(path),
            timeout=60,
            what=f"web {path}",
            container=web_name,
        )
    assert engine.docker("exec", web_name, "id", "-u").stdout.strip() == "10001"
    touched = engine.docker("exec", web_name, "touch", "/app/x", check=False)
    assert touched.returncode != 0  # the root filesystem is read-only

    # The mailer: web's image, its settings and secrets (the SMTP server's URL
    # from the Secret's file), probed by its heartbeat on the /tmp emptyDir.
    mailer_pod, sources = pod_specs["mailer"]
    [mailer] = mailer_pod["containers"]
    mailer_name = docker_names.container("mailer")
    engine.docker(
        *("run", "--detach", "--name", mailer_name, "--network", network),
        *docker_run_options(mailer_pod, sources, mailer, tmp_path),
        site_images["web"],
        *mailer["command"],
    )
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        command = mailer[kind]["exec"]["command"]
        wait_until(
            lambda command=command: (
                engine.docker("exec", mailer_name, *command, check=False).returncode
                == 0
            ),
            timeout=60,
            what=f"the mailer's {kind}",
            container=mailer_name,
        )
    logs = engine.docker("logs", mailer_name)
    assert "No mail is configured" not in logs.stdout + logs.stderr
    assert engine.docker("exec", mailer_name, "id", "-u").stdout.strip() == "10001"
    touched = engine.docker("exec", mailer_name, "touch", "/app/x", check=False)
    assert touched.returncode != 0
    grace = mailer_pod["terminationGracePeriodSeconds"]
    engine.docker("stop", "--time", str(grace), mailer_name, timeout=grace + 30)
    exit_code = engine.docker(
        "inspect", "--format", "{{.State.ExitCode}}", mailer_name
    ).stdout.strip()
    assert exit_code == "0"  # SIGTERM drained, not killed at the grace period

    nginx_pod, sources = pod_specs["nginx"]
    [nginx] = nginx_pod["containers"]
    nginx_name = docker_names.container("nginx")
    engine.docker(
        *("run", "--detach", "--name", nginx_name, "--network", network),
        *("--publish", "127.0.0.1::8080"),
        *docker_run_options(nginx_pod, sources, nginx, tmp_path),
        site_images["nginx"],
    )
    port = engine.docker("port", nginx_name, "8080/tcp").stdout.split(":")[-1].strip()
    base = f"http://127.0.0.1:{port}"

    def nginx_answers():
        try:
            return requests.get(f"{base}/static/site/site.css", timeout=2).ok
        except requests.ConnectionError:
            return False

    wait_until(nginx_answers, timeout=60, what="nginx", container=nginx_name)
    # The pod's keepalive sysctls, which proxy_socket_keepalive's probes use.
    keepalive = engine.docker(
        *("exec", "--workdir", "/proc/sys/net/ipv4", nginx_name, "cat"),
        *("tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes"),
    ).stdout.split()
    assert keepalive == ["1", "1", "3"]
    rendered = engine.docker(
        "exec", nginx_name, "cat", "/etc/nginx/conf.d/default.conf"
    ).stdout
    # Docker's DNS is what resolv.conf names here, as the cluster DNS is in a pod.
    assert "resolver 127.0.0.11" in rendered
    assert f"set $signup_upstream web.{NAMESPACE}.svc.cluster.local:8000;" in rendered
    host = {"Host": "signup.example.com"}
    # Through nginx, Django's redirect to https (nginx is not behind the
    # overlay's TLS proxy here), with nginx's HSTS for the https public URL;
    # the probes are web's alone.
    page = requests.get(
        f"{base}/thanks/", headers=host, allow_redirects=False, timeout=10
    )
    public_probe = requests.get(f"{base}/readyz", headers=host, timeout=10)
    assert (page.status_code, page.headers["Location"]) == (
        301,
        "https://signup.example.com/thanks/",
    )
    assert page.headers["Strict-Transport-Security"] == (
        "max-age=3600; includeSubDomains; preload"
    )
    assert public_probe.status_code == 404

    # preStop: a graceful quit as uid 101, and the container ends with it.
    command = nginx["lifecycle"]["preStop"]["exec"]["command"]
    engine.docker("exec", "--detach", nginx_name, *command)
    status = engine.docker("wait", nginx_name, timeout=60).stdout.strip()
    assert status == "0"
