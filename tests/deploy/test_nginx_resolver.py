"""
nginx in a Kubernetes pod: nginx/resolver.envsh turns NGINX_RESOLVER=local
into the nameservers of resolv.conf, and with the nginx pod's environment as
the kubelet expands it, real nginx reaches web through a DNS server that, like
a cluster's, answers only the fully qualified name.
"""

import os
import shutil
import subprocess

import pytest
import requests

from loopback.nginx import NGINX_BINARY, Nginx
from loopback.processes import free_port
from tests.deploy import kubernetes as k8s
from tests.support.ci import require_program
from tests.support.commands import PROJECT_ROOT
from tests.support.stack import nginx_before_echo

HOOK = PROJECT_ROOT / "nginx" / "resolver.envsh"


def source_hook(**environment):
    """Source the hook in sh as the image's entrypoint does; return the
    CompletedProcess, whose stdout is the NGINX_RESOLVER it leaves."""
    return subprocess.run(
        ["sh", "-c", f'set -e; . "{HOOK}"; printf %s "$NGINX_RESOLVER"'],
        env={"PATH": os.environ["PATH"], **environment},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_local_becomes_the_nameservers_of_resolv_conf():
    result = source_hook(
        NGINX_RESOLVER="local", NGINX_LOCAL_RESOLVERS="10.96.0.10 [fd00::a]"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "10.96.0.10 [fd00::a]"


def test_an_address_is_left_as_it_is():
    result = source_hook(NGINX_RESOLVER="127.0.0.11", NGINX_LOCAL_RESOLVERS="10.0.0.1")

    assert (result.returncode, result.stdout) == (0, "127.0.0.11")


def test_local_without_the_images_hook_stops_nginx_with_the_reason():
    result = source_hook(NGINX_RESOLVER="local")

    assert result.returncode == 1
    assert "NGINX_ENTRYPOINT_LOCAL_RESOLVERS=1" in result.stderr


def test_the_image_runs_the_hook_between_local_resolvers_and_the_template():
    dockerfile = (PROJECT_ROOT / "docker" / "Dockerfile").read_text()
    nginx_stage = dockerfile.split(" AS nginx", 1)[1].split("\nFROM ", 1)[0]
    copied = [
        line.split()[-1]
        for line in nginx_stage.splitlines()
        if line.startswith("COPY nginx/resolver.envsh ")
    ]

    assert len(copied) == 1
    name = copied[0].removeprefix("/docker-entrypoint.d/")
    # The entrypoint runs its hooks in `sort -V` order.
    order = subprocess.run(
        ["sort", "-V"],
        input=f"20-envsubst-on-templates.sh\n{name}\n15-local-resolvers.envsh\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert order == ["15-local-resolvers.envsh", name, "20-envsubst-on-templates.sh"]
    assert name.endswith(".envsh")
    assert os.access(HOOK, os.X_OK)  # the entrypoint ignores it otherwise


@pytest.fixture
def cluster_like_nginx(tmp_path_factory):
    """Real nginx with the project's template, configured from the rendered
    nginx pod's environment; a fake cluster DNS that knows web only by its
    fully qualified name; an echo server standing in for gunicorn."""
    require_program(NGINX_BINARY, "this test runs Debian's nginx", "nginx")
    kubectl = k8s.kubectl_or_unavailable()
    root = k8s.copy_manifests(tmp_path_factory.mktemp("kubernetes"))
    objects = k8s.render(kubectl, root, k8s.EXAMPLE)
    pod = k8s.named(objects, "Deployment", "nginx")["spec"]["template"]["spec"]
    env = k8s.expand_env(pod["containers"][0]["env"], **{"metadata.namespace": "shop"})
    host = env["NGINX_UPSTREAM"].rsplit(":", 1)[0]

    def resolver(address):
        hook = source_hook(
            NGINX_RESOLVER=env["NGINX_RESOLVER"], NGINX_LOCAL_RESOLVERS=address
        )
        assert hook.returncode == 0, hook.stderr
        return hook.stdout

    # The pod's name, with the echo server's port instead of 8000.
    with nginx_before_echo(
        "signup-k8s-nginx-",
        upstream_host=host,
        records={host: "127.0.0.1"},
        resolver=resolver,
    ) as (nginx, upstream, dns):
        yield nginx, upstream, dns, host


def test_nginx_reaches_web_by_the_name_the_pod_gives_it(cluster_like_nginx):
    nginx, upstream, dns, host = cluster_like_nginx

    response = requests.get(nginx.url("/"), timeout=10)

    assert response.status_code == 200
    assert response.json() == {"echo": True, "status": 200}
    assert len(upstream.requests) == 1
    assert dns.queries_for(host)
    assert host.endswith(".shop.svc.cluster.local")


def test_the_short_name_would_not_resolve(cluster_like_nginx):
    """What nginx would get with NGINX_UPSTREAM=web:8000 in a cluster: its
    resolver asks for "web" as it is, and the cluster DNS has no such name."""
    nginx, upstream, dns, _host = cluster_like_nginx
    short = Nginx(
        nginx.prefix.parent / f"{nginx.prefix.name}-short",
        {
            **nginx.variables,
            "NGINX_PORT": free_port(),
            "NGINX_UPSTREAM": f"web:{upstream.port}",
        },
    )
    try:
        short.start().wait_ready()
        response = requests.get(short.url("/"), timeout=20)
    finally:
        short.stop()
        shutil.rmtree(short.prefix, ignore_errors=True)

    assert response.status_code == 502
    assert upstream.requests == []
    assert dns.queries_for("web")
