"""
deploy/kubernetes, checked without a cluster: every kustomization renders with
``kubectl kustomize``, the objects are valid for the pinned Kubernetes
versions, and they keep the rules (security context, resources, probes,
rollouts, secrets, NetworkPolicies, image names, nginx's upstream). Each rule
is also shown catching a broken copy.
"""

import base64
import copy
import json
import subprocess

import kubernetes_validate
import pytest

from tests.compose.engine import compose_binary
from tests.deploy import kubernetes as k8s
from tests.support.commands import PROJECT_ROOT, site_environment

DIRECTORIES = [k8s.BASE, *k8s.OVERLAYS]
EXAMPLE = k8s.EXAMPLE
RULES = {
    "security": k8s.security_problems,
    "resources": k8s.resource_problems,
    "probes": k8s.probe_problems,
    "writable paths": k8s.writable_path_problems,
    "rollout": k8s.rollout_problems,
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """{directory: objects} for the base and every overlay."""
    kubectl = k8s.kubectl_or_unavailable()
    root = k8s.copy_manifests(tmp_path_factory.mktemp("kubernetes"))
    return {
        directory: k8s.render(kubectl, root, directory) for directory in DIRECTORIES
    }


def test_there_is_a_base_and_the_example_overlay():
    assert EXAMPLE in k8s.OVERLAYS
    assert (k8s.KUBERNETES_DIR / "base" / "kustomization.yaml").is_file()


# --- Valid Kubernetes objects -------------------------------------------------


@pytest.mark.parametrize("version", k8s.KUBERNETES_VERSIONS)
@pytest.mark.parametrize("directory", DIRECTORIES, ids=str)
def test_the_rendered_objects_are_valid_kubernetes(rendered, directory, version):
    kinds = {obj["kind"] for obj in rendered[directory]}
    assert {"Deployment", "Service", "NetworkPolicy"} <= kinds
    for obj in rendered[directory]:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_rejects_a_misspelt_field(rendered):
    deployment = copy.deepcopy(k8s.named(rendered[EXAMPLE], "Deployment", "web"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            deployment, k8s.KUBERNETES_VERSIONS[0], strict=True
        )


# --- The rules, on every rendering and on broken copies ------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("directory", DIRECTORIES, ids=str)
def test_every_workload_keeps_the_rule(rendered, directory, rule):
    assert RULES[rule](rendered[directory]) == []


def _web(objects):
    return k8s.named(objects, "Deployment", "web")["spec"]["template"]["spec"]


def _nginx(objects):
    return k8s.named(objects, "Deployment", "nginx")["spec"]["template"]["spec"]


def _mailer(objects):
    return k8s.named(objects, "Deployment", "mailer")["spec"]["template"]["spec"]


BREAKAGES = {
    "security": [
        lambda o: _web(o)["initContainers"][0]["securityContext"].pop(
            "readOnlyRootFilesystem"
        ),
        lambda o: _nginx(o)["containers"][0]["securityContext"].update(
            allowPrivilegeEscalation=True
        ),
        lambda o: _web(o)["containers"][0]["securityContext"]["capabilities"].update(
            drop=["NET_RAW"]
        ),
        lambda o: _nginx(o)["securityContext"].update(runAsUser=0),
        lambda o: _mailer(o)["containers"][0]["securityContext"].pop(
            "readOnlyRootFilesystem"
        ),
        lambda o: _mailer(o)["containers"][0]["securityContext"]["capabilities"].update(
            add=["NET_RAW"]
        ),
    ],
    "resources": [
        lambda o: _web(o)["initContainers"][0]["resources"].pop("limits"),
        lambda o: _nginx(o)["containers"][0]["resources"]["requests"].pop("memory"),
        lambda o: _mailer(o)["containers"][0]["resources"]["limits"].pop("cpu"),
    ],
    "probes": [
        lambda o: _nginx(o)["containers"][0].pop("readinessProbe"),
        lambda o: _web(o)["containers"][0]["livenessProbe"]["httpGet"].update(
            path="/readyz"
        ),
        lambda o: _web(o)["containers"][0]["startupProbe"]["httpGet"].update(
            port="https"
        ),
        lambda o: _mailer(o)["containers"][0].pop("livenessProbe"),
        lambda o: _mailer(o)["containers"][0]["readinessProbe"]["exec"].update(
            command=["true"]
        ),
    ],
    "writable paths": [
        lambda o: _web(o)["containers"][0]["volumeMounts"].pop(),
        lambda o: _nginx(o)["containers"][0]["volumeMounts"].pop(0),
        lambda o: _mailer(o)["containers"][0]["volumeMounts"].pop(),
        lambda o: _mailer(o)["containers"][0]["env"].append(
            {"name": "MAILER_HEARTBEAT_FILE", "value": "/app/heartbeat"}
        ),
    ],
    "rollout": [
        lambda o: k8s.named(o, "Deployment", "web")["spec"]["strategy"][
            "rollingUpdate"
        ].update(maxUnavailable=1),
        lambda o: k8s.named(o, "Deployment", "web")["spec"].update(replicas=2),
        lambda o: _web(o).update(terminationGracePeriodSeconds=30),
        lambda o: _nginx(o)["containers"][0].pop("lifecycle"),
        lambda o: k8s.named(o, "PodDisruptionBudget", "web")["spec"].update(
            maxUnavailable=0
        ),
        lambda o: _mailer(o).update(terminationGracePeriodSeconds=10),
        lambda o: k8s.named(o, "Deployment", "mailer")["spec"]["strategy"][
            "rollingUpdate"
        ].update(maxSurge=0, maxUnavailable=1),
    ],
}


@pytest.mark.parametrize(
    ("rule", "breakage"),
    [
        (rule, index)
        for rule, breakages in BREAKAGES.items()
        for index in range(len(breakages))
    ],
)
def test_each_rule_catches_a_broken_copy(rendered, rule, breakage):
    objects = copy.deepcopy(rendered[EXAMPLE])
    BREAKAGES[rule][breakage](objects)

    assert RULES[rule](objects) != []


# --- Images -------------------------------------------------------------------


def compose_images(home):
    """The image names compose.yaml gives web and nginx on a fresh clone."""
    result = subprocess.run(
        [str(compose_binary()), "--file", "compose.yaml", "config", "--format", "json"],
        cwd=PROJECT_ROOT,
        env={**site_environment(), "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name in ("web", "nginx"):
        assert "image" in services[name], f"compose.yaml names no image for {name}"
    return {name: services[name]["image"] for name in ("web", "nginx")}


def workload_images(objects):
    return {
        workload: sorted({container["image"] for container in k8s.containers(pod)})
        for workload, pod in k8s.pod_specs(objects)
    }


def test_the_base_runs_the_images_compose_builds(rendered, tmp_path):
    images = compose_images(tmp_path)

    assert workload_images(rendered[k8s.BASE]) == {
        "web": [images["web"]],
        "mailer": [images["web"]],
        "nginx": [images["nginx"]],
    }


def test_the_example_overlay_runs_one_release_from_the_registry(rendered):
    images = workload_images(rendered[EXAMPLE])

    assert images == {
        "web": ["ghcr.io/example/signup/web:1.0.0"],
        "mailer": ["ghcr.io/example/signup/web:1.0.0"],
        "nginx": ["ghcr.io/example/signup/nginx:1.0.0"],
    }


# --- Secrets ------------------------------------------------------------------


def test_no_secret_value_is_written_in_the_manifests(rendered):
    assert k8s.secret_problems(rendered[k8s.BASE], may_hold_secrets=False) == []
    assert k8s.of_kind(rendered[k8s.BASE], "Secret") == []
    for overlay in k8s.OVERLAYS:
        assert k8s.secret_problems(rendered[overlay], may_hold_secrets=True) == []
        for generator in k8s.kustomization(overlay).get("secretGenerator", []):
            assert "literals" not in generator, generator["name"]
    for path in k8s.KUBERNETES_DIR.rglob("*.yaml"):
        assert "kind: Secret" not in path.read_text(), path


def test_the_secret_check_catches_an_inline_password(rendered):
    objects = copy.deepcopy(rendered[EXAMPLE])
    _web(objects)["containers"][0]["env"].append(
        {"name": "POSTGRES_PASSWORD", "value": "hunter2"}
    )
    _nginx(objects)["containers"][0]["env"].append(
        {"name": "HARMLESS", "value": "Zq8xP2mN7vR4tK9wL3bY"}
    )
    settings = k8s.named(objects, "ConfigMap", "signup-web")["data"]
    # A secret's name in the settings, but a file's path is only a pointer.
    settings["DJANGO_SECRET_KEY_FALLBACKS"] = "old"
    assert settings["DJANGO_SECRET_KEY_FALLBACKS_FILE"].startswith("/")

    assert len(k8s.secret_problems(objects, may_hold_secrets=True)) == 3


@pytest.mark.parametrize("workload", ["web", "mailer"])
def test_the_site_pods_read_their_secrets_from_files(rendered, workload):
    pod = k8s.named(rendered[EXAMPLE], "Deployment", workload)["spec"]["template"]
    pod = pod["spec"]
    secret_volume = next(v for v in pod["volumes"] if "secret" in v)
    secret = k8s.named(rendered[EXAMPLE], "Secret", "signup-secrets")

    for container in k8s.containers(pod):
        env = k8s.expand_env(container["env"])
        mount = next(
            m for m in container["volumeMounts"] if m["name"] == secret_volume["name"]
        )
        assert mount["readOnly"] is True
        for variable, key in (
            ("DJANGO_SECRET_KEY_FILE", "django-secret-key"),
            ("POSTGRES_PASSWORD_FILE", "postgres-password"),
        ):
            assert env[variable] == f"{mount['mountPath']}/{key}"
            assert key in secret["data"]
    assert secret_volume["secret"]["secretName"] == secret["metadata"]["name"]


def test_web_and_the_mailer_share_settings_and_the_smtp_url_is_a_secret_file(
    rendered,
):
    objects = rendered[EXAMPLE]
    settings = k8s.named(objects, "ConfigMap", "signup-web")
    secret = k8s.named(objects, "Secret", "signup-secrets")
    sources = {}
    for workload in ("web", "mailer"):
        pod = k8s.named(objects, "Deployment", workload)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        sources[workload] = container["envFrom"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
        assert settings["data"]["EMAIL_URL_FILE"] == (
            f"{mount['mountPath']}/email-url"
        ), workload
    assert sources["web"] == sources["mailer"]
    assert "email-url" in secret["data"]
    assert settings["data"]["SIGNUP_DOUBLE_OPT_IN"] == "true"
    assert "@" in settings["data"]["DEFAULT_FROM_EMAIL"]
    # The base sends no mail: no server named, nothing to read.
    base = k8s.named(rendered[k8s.BASE], "ConfigMap", "signup-web")
    assert not {"EMAIL_URL", "EMAIL_URL_FILE"} & base["data"].keys()


def test_a_change_of_key_rolls_twice_with_both_keys_accepted_throughout(tmp_path):
    """docs/kubernetes.md's steps: the new key first as the fallback, then
    the two files swapped. Each step gives the Secret the pods mount a new
    name (a rollout), and the settings point at both files."""
    kubectl = k8s.kubectl_or_unavailable()
    root = k8s.copy_manifests(tmp_path)
    secrets_dir = root / EXAMPLE / "secrets"
    old_key = (secrets_dir / "django-secret-key").read_text()
    new_key = "a-new-key-" * 6 + "\n"
    steps = [k8s.render(kubectl, root, EXAMPLE)]
    (secrets_dir / "django-secret-key-fallbacks").write_text(new_key)
    steps.append(k8s.render(kubectl, root, EXAMPLE))
    (secrets_dir / "django-secret-key").write_text(new_key)
    (secrets_dir / "django-secret-key-fallbacks").write_text(old_key)
    steps.append(k8s.render(kubectl, root, EXAMPLE))

    def mounted(objects, workload):
        """The settings' file for the fallbacks, and the Secret's name and
        files as WORKLOAD's pods mount them."""
        spec = k8s.named(objects, "Deployment", workload)["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
        volume = next(v for v in spec["volumes"] if v["name"] == "secrets")
        name = volume["secret"]["secretName"]
        (secret,) = [
            s for s in k8s.of_kind(objects, "Secret") if s["metadata"]["name"] == name
        ]
        settings = k8s.named(objects, "ConfigMap", "signup-web")["data"]
        files = {
            key: base64.b64decode(value or "").decode()
            for key, value in secret["data"].items()
        }
        fallbacks_file = settings["DJANGO_SECRET_KEY_FALLBACKS_FILE"]
        assert fallbacks_file == f"{mount['mountPath']}/django-secret-key-fallbacks"
        return name, files

    for workload in ("web", "mailer"):
        mounts = [mounted(objects, workload) for objects in steps]
        assert len({name for name, _ in mounts}) == 3, workload
        files = [files for _, files in mounts]
        assert [f["django-secret-key"] for f in files] == [old_key, old_key, new_key]
        assert [f["django-secret-key-fallbacks"] for f in files] == [
            "",
            new_key,
            old_key,
        ]


def test_the_example_overlays_secret_files_are_never_committed():
    secrets_dir = k8s.KUBERNETES_DIR / EXAMPLE / "secrets"
    names = ("django-secret-key", "django-secret-key-fallbacks", "postgres-password")
    for name in (*names, "email-url"):
        ignored = subprocess.run(
            ["git", "check-ignore", "--quiet", str(secrets_dir / name)],
            cwd=PROJECT_ROOT,
        )
        assert ignored.returncode == 0, f"{name} is not ignored by git"


# --- NetworkPolicies ----------------------------------------------------------

CLUSTER_DNS = {"namespace": "kube-system", "pod_labels": {"k8s-app": "kube-dns"}}
DATABASE = {"address": "203.0.113.7"}


@pytest.mark.parametrize("directory", DIRECTORIES, ids=str)
def test_only_nginx_reaches_web_and_only_web_reaches_the_database(rendered, directory):
    objects = rendered[directory]
    allowed = k8s.traffic_allowed

    assert allowed(objects, "nginx", "web", 8000)
    assert not allowed(objects, "web", "web", 8000)
    assert not allowed(objects, "web", "nginx", 8080)
    assert not allowed(objects, {"namespace": "other"}, "web", 8000)
    assert allowed(objects, "web", DATABASE, 5432)
    assert not allowed(objects, "nginx", DATABASE, 5432)
    assert not allowed(objects, "web", DATABASE, 443)
    assert not allowed(objects, "nginx", {"address": "198.51.100.1"}, 80)
    for workload in ("web", "nginx"):
        assert allowed(objects, workload, CLUSTER_DNS, 53, "UDP")
        assert allowed(objects, workload, CLUSTER_DNS, 53, "TCP")
        assert not allowed(objects, workload, {"namespace": "kube-system"}, 53, "UDP")


SMTP_SERVER = {"address": "198.51.100.25"}


@pytest.mark.parametrize("directory", DIRECTORIES, ids=str)
def test_the_mailer_reaches_the_database_and_smtp_only_and_nothing_reaches_it(
    rendered, directory
):
    objects = rendered[directory]
    allowed = k8s.traffic_allowed

    assert allowed(objects, "mailer", DATABASE, 5432)
    for port in (587, 465):  # submission with STARTTLS, with implicit TLS
        assert allowed(objects, "mailer", SMTP_SERVER, port)
        assert not allowed(objects, "web", SMTP_SERVER, port)
        assert not allowed(objects, "nginx", SMTP_SERVER, port)
    for port in (80, 443, 8000, 6379):
        assert not allowed(objects, "mailer", SMTP_SERVER, port)
    assert not allowed(objects, "mailer", "web", 8000)
    assert not allowed(objects, "mailer", "nginx", 8080)
    assert allowed(objects, "mailer", CLUSTER_DNS, 53, "UDP")
    assert allowed(objects, "mailer", CLUSTER_DNS, 53, "TCP")
    assert not allowed(objects, "mailer", {"namespace": "kube-system"}, 53, "UDP")
    controller = {"namespace": "traefik", "pod_labels": {"app": "traefik"}}
    for source in ({"namespace": "other"}, controller, SMTP_SERVER):
        for port in (8000, 8080, 25):
            assert not allowed(objects, source, "mailer", port)


def test_a_mailer_policy_that_lets_it_out_anywhere_or_anyone_in_is_caught(rendered):
    out = copy.deepcopy(rendered[EXAMPLE])
    k8s.named(out, "NetworkPolicy", "mailer")["spec"]["egress"].append({})
    into = copy.deepcopy(rendered[EXAMPLE])
    k8s.named(into, "NetworkPolicy", "mailer")["spec"]["ingress"] = [{}]

    assert k8s.traffic_allowed(out, "mailer", SMTP_SERVER, 443)
    assert k8s.traffic_allowed(into, {"namespace": "other"}, "mailer", 8000)


def test_only_the_ingress_controller_reaches_nginx(rendered):
    base, example = rendered[k8s.BASE], rendered[EXAMPLE]
    controller = {"namespace": "traefik", "pod_labels": {"app": "traefik"}}

    assert k8s.traffic_allowed(example, controller, "nginx", 8080)
    assert not k8s.traffic_allowed(example, controller, "web", 8000)
    assert not k8s.traffic_allowed(example, {"namespace": "other"}, "nginx", 8080)
    # The base names no controller: nothing reaches nginx until an overlay does.
    assert not k8s.traffic_allowed(base, controller, "nginx", 8080)


def test_a_policy_whose_labels_select_nothing_is_caught(rendered):
    objects = copy.deepcopy(rendered[EXAMPLE])
    policy = k8s.named(objects, "NetworkPolicy", "web")
    policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"][
        "app.kubernetes.io/component"
    ] = "proxy"

    assert not k8s.traffic_allowed(objects, "nginx", "web", 8000)


def test_a_policy_that_lets_nginx_out_to_anything_is_caught(rendered):
    objects = copy.deepcopy(rendered[EXAMPLE])
    k8s.named(objects, "NetworkPolicy", "nginx")["spec"]["egress"].append({})

    assert k8s.traffic_allowed(objects, "nginx", DATABASE, 5432)


# --- nginx -> web -------------------------------------------------------------


@pytest.mark.parametrize("directory", DIRECTORIES, ids=str)
def test_nginx_names_web_by_its_fully_qualified_service_name(rendered, directory):
    assert k8s.upstream_problems(rendered[directory]) == []


def _set_env(container, name, value):
    for entry in container["env"]:
        if entry["name"] == name:
            entry["value"] = value


UPSTREAM_BREAKAGES = {
    "short name": lambda o: _set_env(
        _nginx(o)["containers"][0], "NGINX_UPSTREAM", "web:8000"
    ),
    "namespace defined too late": lambda o: _nginx(o)["containers"][0]["env"].append(
        _nginx(o)["containers"][0]["env"].pop(0)
    ),
    "web's Service renamed": lambda o: k8s.named(o, "Service", "web")[
        "metadata"
    ].update(name="app"),
    "wrong port": lambda o: _set_env(
        _nginx(o)["containers"][0],
        "NGINX_UPSTREAM",
        "web.$(POD_NAMESPACE).svc.cluster.local:80",
    ),
    "Docker's resolver": lambda o: _set_env(
        _nginx(o)["containers"][0], "NGINX_RESOLVER", "127.0.0.11"
    ),
}


@pytest.mark.parametrize("breakage", UPSTREAM_BREAKAGES)
def test_the_upstream_check_catches_a_broken_copy(rendered, breakage):
    objects = copy.deepcopy(rendered[EXAMPLE])
    UPSTREAM_BREAKAGES[breakage](objects)

    assert k8s.upstream_problems(objects) != []
