"""
The Kubernetes manifests as a cluster would receive them: each kustomization
under deploy/kubernetes rendered by ``kubectl kustomize``, and the rules they
must keep, written as functions that list what breaks a rule (an empty list
when nothing does), so a test can show each rule catching a broken copy.

No cluster runs here; what a cluster would do with the objects (label
selection, NetworkPolicy, ``$(VAR)`` expansion in env values) is worked out
from the Kubernetes documentation's rules.
"""

import ipaddress
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.support.ci import unavailable
from tests.support.commands import PROJECT_ROOT, copy_as_cloned

KUBERNETES_DIR = PROJECT_ROOT / "deploy" / "kubernetes"
BASE = Path("base")
OVERLAYS = sorted(
    path.parent.relative_to(KUBERNETES_DIR)
    for path in (KUBERNETES_DIR / "overlays").glob("*/kustomization.yaml")
)
# The overlay docs/kubernetes.md's commands apply.
EXAMPLE = Path("overlays") / "example"
KUBECTL = "kubectl"
# Kubernetes versions the rendered objects must be valid for: the oldest one
# the manifests claim (native preStop sleep is on by default from 1.30) and
# the newest the validator knows.
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")
# gunicorn's graceful_timeout (docker/web/gunicorn.conf.py's default).
GUNICORN_GRACEFUL_TIMEOUT = 30
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
}
# EMAIL_URL holds the SMTP server's password (EMAIL_URL_FILE is a path).
SECRET_LOOKING_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|DATABASE_URL|EMAIL_URL$")
# A container that serves no port (the mailer) is probed by its heartbeat.
HEARTBEAT_CHECK = ["python", "/app/docker/web/mailer-alive.py"]
DEFAULT_HEARTBEAT_FILE = "/tmp/mailer-heartbeat"
# The mail in hand when the mailer is stopped: a few SMTP steps of
# EMAIL_TIMEOUT (10 s) each, then the commit.
MAIL_IN_HAND_SECONDS = 3 * 10


def kubectl_or_unavailable():
    path = shutil.which(KUBECTL)
    if not path:
        unavailable(
            "kubectl is missing: the Kubernetes tests render the manifests with "
            "`kubectl kustomize` (it is preinstalled on the project's machines)"
        )
    return path


def copy_manifests(destination):
    """Copy deploy/kubernetes as a clone has it (tracked files and new ones
    git does not ignore, so never a developer's own secret files), and create
    each file an overlay's secretGenerator reads with a random test value,
    but the earlier keys' file: empty, as it is but while the key changes."""
    copy_as_cloned(KUBERNETES_DIR, destination)
    for overlay in OVERLAYS:
        for generator in kustomization(overlay).get("secretGenerator", []):
            for entry in generator.get("files", []):
                path = destination / overlay / entry.split("=", 1)[-1]
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    value = secrets.token_urlsafe(50) + "\n"
                    path.write_text("" if path.name.endswith("-fallbacks") else value)
    return destination


def kustomization(directory):
    return yaml.safe_load(
        (KUBERNETES_DIR / directory / "kustomization.yaml").read_text()
    )


def render(kubectl, root, directory):
    """The objects ``kubectl kustomize`` makes of ROOT/DIRECTORY."""
    result = subprocess.run(
        [kubectl, "kustomize", str(root / directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(objects, kind):
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects, kind, name):
    """The object of KIND whose name is NAME or, for generated ones, NAME-hash."""
    found = [
        obj
        for obj in of_kind(objects, kind)
        if obj["metadata"]["name"] == name
        or re.fullmatch(rf"{re.escape(name)}-[a-z0-9]{{10}}", obj["metadata"]["name"])
    ]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def pod_specs(objects):
    """(workload name, pod spec) of every object that makes pods."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
            yield obj["metadata"]["name"], template["spec"]


def containers(pod, *, init=True):
    listed = list(pod.get("containers", []))
    if init:
        listed += pod.get("initContainers", [])
    return listed


def pod_labels(objects, workload):
    return named(objects, "Deployment", workload)["spec"]["template"]["metadata"][
        "labels"
    ]


def selects(selector, labels):
    """A Kubernetes label selector's verdict on LABELS ({} selects all)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def expand_env(env, **downward):
    """An env list's values as the kubelet sets them: ``$(NAME)`` replaced by
    an earlier variable of the list (DOWNWARD gives fieldRef values)."""
    values = {}
    for entry in env:
        if "value" in entry:
            values[entry["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda match: values.get(match.group(1), match.group(0)),
                entry["value"],
            )
        elif "fieldRef" in entry.get("valueFrom", {}):
            values[entry["name"]] = downward[
                entry["valueFrom"]["fieldRef"]["fieldPath"]
            ]
    return values


# --- The rules ----------------------------------------------------------------


def security_problems(objects):
    """Every container, init containers too, meets the "restricted" Pod
    Security Standard and has a read-only root filesystem."""
    problems = []
    for workload, pod in pod_specs(objects):
        pod_context = pod.get("securityContext", {})
        for container in containers(pod):
            where = f"{workload}/{container['name']}"
            context = container.get("securityContext", {})
            for key, wanted in RESTRICTED_CONTAINER.items():
                if context.get(key) is not wanted:
                    problems.append(f"{where}: securityContext.{key} is not {wanted}")
            if "ALL" not in context.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if context.get("capabilities", {}).get("add"):
                problems.append(f"{where}: adds capabilities")
            if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
                problems.append(f"{where}: runAsNonRoot is not set")
            if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
                problems.append(f"{where}: runs as uid 0")
            seccomp = context.get("seccompProfile") or pod_context.get(
                "seccompProfile", {}
            )
            if seccomp.get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccompProfile is not RuntimeDefault")
    return problems


def resource_problems(objects):
    """Every container has CPU and memory requests and limits."""
    problems = []
    for workload, pod in pod_specs(objects):
        for container in containers(pod):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(kind, {}):
                        problems.append(
                            f"{workload}/{container['name']}: no {resource} {kind}"
                        )
    return problems


def probe_problems(objects):
    """Every long-running container has startup, readiness and liveness
    probes: on a port it declares, or, if it serves none (the mailer), its
    heartbeat check; web's are /readyz and /healthz."""
    problems = []
    for workload, pod in pod_specs(objects):
        for container in containers(pod, init=False):
            where = f"{workload}/{container['name']}"
            ports = {port.get("name") for port in container.get("ports", [])} | {
                port["containerPort"] for port in container.get("ports", [])
            }
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if not ports:
                    command = container.get(probe, {}).get("exec", {}).get("command")
                    if command != HEARTBEAT_CHECK:
                        problems.append(f"{where}: {probe} is not the heartbeat check")
                    continue
                handler = container.get(probe, {}).get("httpGet")
                if handler is None:
                    problems.append(f"{where}: no {probe} (httpGet)")
                elif handler["port"] not in ports:
                    problems.append(f"{where}: {probe} on undeclared port")
            if container["name"] == "web":
                paths = {
                    probe: container.get(probe, {}).get("httpGet", {}).get("path")
                    for probe in ("readinessProbe", "livenessProbe", "startupProbe")
                }
                if paths != {
                    "readinessProbe": "/readyz",
                    "livenessProbe": "/healthz",
                    "startupProbe": "/healthz",
                }:
                    problems.append(f"{where}: probes are {paths}")
    return problems


def writable_path_problems(objects):
    """Each container's mounts name volumes that exist, and the paths its
    program writes to are mounted (the root filesystem is read-only)."""
    needed = {
        "web": {"/tmp"},  # gunicorn's heartbeat files (GUNICORN_WORKER_TMP_DIR)
        "migrate": {"/tmp"},
        "nginx": {"/var/cache/nginx", "/run", "/etc/nginx/conf.d"},
    }
    problems = []
    for workload, pod in pod_specs(objects):
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        for container in containers(pod):
            where = f"{workload}/{container['name']}"
            mounts = container.get("volumeMounts", [])
            for mount in mounts:
                if mount["name"] not in volumes:
                    problems.append(f"{where}: mounts a missing volume {mount['name']}")
            writable = {
                mount["mountPath"]
                for mount in mounts
                if not mount.get("readOnly")
                and "emptyDir" in volumes.get(mount["name"], {})
            }
            wanted = set(needed.get(container["name"], set()))
            if container.get("livenessProbe", {}).get("exec", {}).get("command") == (
                HEARTBEAT_CHECK
            ):
                # The directory of the file the worker touches for its probes.
                env = expand_env(container.get("env", []))
                heartbeat = env.get("MAILER_HEARTBEAT_FILE") or DEFAULT_HEARTBEAT_FILE
                wanted.add(str(Path(heartbeat).parent))
            for path in sorted(wanted - writable):
                problems.append(f"{where}: {path} is not a writable emptyDir")
    return problems


def rollout_problems(objects):
    """Rolling updates never go below the desired count; the grace period
    outlasts preStop plus gunicorn's graceful timeout, or for a container that
    serves nothing (the mailer) the mail in hand; the HPA owns web's replica
    count; disruption budgets let drains proceed."""
    problems = []
    for deployment in of_kind(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        strategy = deployment["spec"].get("strategy", {})
        rolling = strategy.get("rollingUpdate", {})
        if strategy.get("type") != "RollingUpdate":
            problems.append(f"{name}: strategy is not RollingUpdate")
        if str(rolling.get("maxUnavailable")) not in ("0", "0%"):
            problems.append(
                f"{name}: maxUnavailable is {rolling.get('maxUnavailable')}"
            )
        if str(rolling.get("maxSurge", "0")).rstrip("%") in ("0", ""):
            problems.append(f"{name}: maxSurge is 0")
        pod = deployment["spec"]["template"]["spec"]
        grace = pod.get("terminationGracePeriodSeconds", 30)
        for container in containers(pod, init=False):
            pre_stop = container.get("lifecycle", {}).get("preStop")
            if not container.get("ports"):
                # Nothing routes to it, so there is nothing to wait out; it
                # needs the time to finish the mail in hand instead.
                if grace < MAIL_IN_HAND_SECONDS:
                    problems.append(
                        f"{name}: grace period {grace} s is below the "
                        f"{MAIL_IN_HAND_SECONDS} s a mail in hand may take"
                    )
                continue
            if not pre_stop:
                problems.append(f"{name}/{container['name']}: no preStop")
                continue
            sleep = pre_stop.get("sleep", {}).get("seconds", 0)
            if (
                container["name"] == "web"
                and grace <= sleep + GUNICORN_GRACEFUL_TIMEOUT
            ):
                problems.append(
                    f"{name}: grace period {grace} s is not above preStop {sleep} s "
                    f"+ gunicorn's {GUNICORN_GRACEFUL_TIMEOUT} s"
                )
    for autoscaler in of_kind(objects, "HorizontalPodAutoscaler"):
        target = autoscaler["spec"]["scaleTargetRef"]
        deployment = named(objects, target["kind"], target["name"])
        if "replicas" in deployment["spec"]:
            problems.append(f"{target['name']}: spec.replicas beside an HPA")
        pod = deployment["spec"]["template"]["spec"]
        for metric in autoscaler["spec"].get("metrics", []):
            resource = metric.get("resource", {}).get("name")
            for container in containers(pod, init=False):
                if resource not in container.get("resources", {}).get("requests", {}):
                    problems.append(f"{target['name']}: HPA on {resource}, no request")
        if autoscaler["spec"].get("minReplicas", 1) < 2:
            problems.append(f"{target['name']}: HPA allows a single replica")
    for budget in of_kind(objects, "PodDisruptionBudget"):
        name = budget["metadata"]["name"]
        covered = [
            deployment
            for deployment in of_kind(objects, "Deployment")
            if selects(
                budget["spec"]["selector"],
                deployment["spec"]["template"]["metadata"]["labels"],
            )
        ]
        if len(covered) != 1:
            problems.append(f"PDB {name} selects {len(covered)} Deployments")
        if str(budget["spec"].get("maxUnavailable", "")) in ("", "0", "0%"):
            problems.append(
                f"PDB {name} blocks every drain (or sets no maxUnavailable)"
            )
    return problems


def upstream_problems(objects):
    """nginx names web by its fully qualified Service name (its resolver does
    not use the pod's DNS search list) and resolves it with the cluster DNS."""
    nginx = named(objects, "Deployment", "nginx")["spec"]["template"]["spec"]
    env = expand_env(nginx["containers"][0]["env"], **{"metadata.namespace": "shop"})
    upstream = env.get("NGINX_UPSTREAM", "")
    match = re.fullmatch(r"([a-z0-9-]+)\.shop\.svc\.cluster\.local:(\d+)", upstream)
    if not match:
        return [f"NGINX_UPSTREAM is {upstream!r}, not <service>.<namespace>.svc..."]
    problems = []
    services = [
        service
        for service in of_kind(objects, "Service")
        if service["metadata"]["name"] == match.group(1)
    ]
    web = named(objects, "Deployment", "web")["spec"]["template"]
    web_ports = {
        port.get("name"): port["containerPort"]
        for port in web["spec"]["containers"][0]["ports"]
    }
    if not services or not selects(
        {"matchLabels": services[0]["spec"]["selector"]}, web["metadata"]["labels"]
    ):
        problems.append(f"no Service {match.group(1)} selects the web pods")
    else:
        target = [
            port.get("targetPort")
            for port in services[0]["spec"]["ports"]
            if port["port"] == int(match.group(2))
        ]
        if not target or web_ports.get(target[0], target[0]) != 8000:
            problems.append(f"port {match.group(2)} does not lead to gunicorn's 8000")
    if env.get("NGINX_RESOLVER") != "local" or not env.get(
        "NGINX_ENTRYPOINT_LOCAL_RESOLVERS"
    ):
        problems.append("the resolver is not the cluster DNS from resolv.conf")
    return problems


def looks_like_a_secret(value):
    """A long run of letters and digits mixed, like a generated key or password."""
    return bool(
        re.fullmatch(r"[A-Za-z0-9+=_~!@#%^&*-]{16,}", value)
        and re.search(r"[0-9]", value)
        and re.search(r"[A-Za-z]", value)
    )


def secret_problems(objects, *, may_hold_secrets):
    """No secret value inline: only generated Secrets (in overlays), env
    values that never look like a secret, secrets read from files."""
    problems = []
    for secret in of_kind(objects, "Secret"):
        name = secret["metadata"]["name"]
        if not may_hold_secrets and (secret.get("data") or secret.get("stringData")):
            problems.append(f"Secret {name} holds values")
    for workload, pod in pod_specs(objects):
        for container in containers(pod):
            for entry in container.get("env", []):
                value = entry.get("value")
                if value is None:
                    continue
                is_file_path = entry["name"].endswith("_FILE") and value.startswith("/")
                if SECRET_LOOKING_NAME.search(entry["name"]) and not is_file_path:
                    problems.append(
                        f"{workload}/{container['name']}: {entry['name']} is inline"
                    )
                if looks_like_a_secret(value):
                    problems.append(
                        f"{workload}/{container['name']}: {entry['name']}'s value "
                        "looks like a secret"
                    )
    for config_map in of_kind(objects, "ConfigMap"):
        for key, value in config_map.get("data", {}).items():
            is_file_path = key.endswith("_FILE") and value.startswith("/")
            named_as_secret = SECRET_LOOKING_NAME.search(key) and not is_file_path
            if named_as_secret or looks_like_a_secret(value):
                problems.append(f"ConfigMap {config_map['metadata']['name']}: {key}")
    return problems


# --- NetworkPolicy ------------------------------------------------------------


def _peer_matches(entry, peer, own_namespace):
    """Whether one from/to ENTRY of a policy matches PEER (see traffic_allowed)."""
    if "ipBlock" in entry:
        if peer.get("address") is None:
            return False
        block, address = entry["ipBlock"], ipaddress.ip_address(peer["address"])
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if peer.get("address") is not None:
        return False  # an address outside the cluster is no pod
    if "namespaceSelector" in entry:
        namespace_ok = selects(entry["namespaceSelector"], peer["namespace_labels"])
    else:  # a podSelector alone means pods of the policy's own namespace
        namespace_ok = peer["namespace_labels"] == own_namespace
    pod_ok = (
        selects(entry["podSelector"], peer["pod_labels"])
        if "podSelector" in entry
        else True
    )
    return namespace_ok and pod_ok


def _port_matches(rule, protocol, port):
    ports = rule.get("ports")
    return not ports or any(
        entry.get("protocol", "TCP") == protocol and entry.get("port") in (None, port)
        for entry in ports
    )


def _allowed(policies, direction, own, peer):
    """Whether POLICIES let traffic in DIRECTION ("Ingress" or "Egress")
    between the pod OWN and PEER, on peer["protocol"]/peer["port"]."""
    applying = [
        policy
        for policy in policies
        if selects(policy["spec"]["podSelector"], own["pod_labels"])
        and direction in policy["spec"].get("policyTypes", ["Ingress"])
    ]
    if not applying:
        return True  # a pod is isolated only once some policy selects it
    rules_key, peers_key = direction.lower(), "from" if direction == "Ingress" else "to"
    return any(
        _port_matches(rule, peer["protocol"], peer["port"])
        and (
            not rule.get(peers_key)
            or any(
                _peer_matches(entry, peer, own["namespace_labels"])
                for entry in rule[peers_key]
            )
        )
        for policy in applying
        for rule in policy["spec"].get(rules_key, [])
    )


def traffic_allowed(objects, source, destination, port, protocol="TCP"):
    """Whether the namespace's NetworkPolicies allow a connection. SOURCE and
    DESTINATION are names of Deployments in the namespace, or dicts for a peer
    elsewhere: {"namespace": name, "pod_labels": {...}} for a pod of another
    namespace, {"address": ip} for a host outside the cluster."""
    policies = of_kind(objects, "NetworkPolicy")
    namespace = named(objects, "Deployment", "web")["metadata"].get(
        "namespace", "default"
    )

    def describe(end):
        if isinstance(end, str):
            labels = pod_labels(objects, end)
            end = {"namespace": namespace, "pod_labels": labels}
        return {
            "namespace_labels": {"kubernetes.io/metadata.name": end["namespace"]}
            if "namespace" in end
            else None,
            "pod_labels": end.get("pod_labels", {}),
            "address": end.get("address"),
            "protocol": protocol,
            "port": port,
        }

    src, dst = describe(source), describe(destination)
    if isinstance(source, str) and not _allowed(policies, "Egress", src, dst):
        return False
    return not (
        isinstance(destination, str) and not _allowed(policies, "Ingress", dst, src)
    )
