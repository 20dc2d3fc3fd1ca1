"""
The stack on a swarm of three hosts, as docs/swarm-hosts.md deploys it, under
hosts lost and returned. The hosts are the engine-in-container nodes that
.ci/swarm_nodes.py starts (tests/compose/nodes.py), all three managers:

- node1: the database's host (signup.db) and an edge host (signup.edge);
  the tests drive the swarm through it and never stop it;
- node2: an edge host;
- node3: neither; web and the mailer only.

A web host that is not the leader is lost, then the leader (node2 or node3:
the fixture moves the lead off node1 first), then node2 as an edge host.

The images go to the registry beside the nodes and every node pulls them.
Double opt-in is on, so every sign-up queues a mail for the mailers (two,
at most one per host) to send to the test SMTP server on node1.

Each scenario runs under steady traffic to every edge host that is up (GETs,
and sign-ups through the form), with every request's status and time kept,
and ends with every confirmed sign-up looked up in the database. A request
in flight on a web task of a lost host is nginx's to send elsewhere; before
an edge host is lost, the traffic to it stops, as a load balancer's health
check would stop it, since requests in flight on that host's nginx are the
load balancer's part. The scenarios run in order and share one stack.
"""

import base64
import collections
import email
import email.policy
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field

import pytest
import requests

from loopback.processes import wait_for
from tests.compose import engine, nodes, swarm, traffic
from tests.compose.images import STANDINS, selected
from tests.compose.swarm import Stack
from tests.support.ci import unavailable
from tests.support.commands import site_environment

pytestmark = [pytest.mark.engine, pytest.mark.timeout(600)]

NODE1, NODE2, NODE3 = nodes.NODES
EDGES = (NODE1, NODE2)
VERSION = "hosts"
STACK = "signup"
PORT = 8080
HOSTS_OVERRIDE = engine.PROJECT_ROOT / "tests" / "compose" / "stack.hosts.yaml"
MAIL_FILE = engine.PROJECT_ROOT / "deploy" / "swarm" / "mail.yaml"
SENDER = "signup@example.com"
WEB_REPLICAS = 3
MAILER_REPLICAS = 2
# A request this slow was held up by a lost task: the site answers in
# milliseconds, and nginx waits its connect timeout (500 ms) for each lost
# address, or its keepalive probes (about 4 s) for a request in flight.
SLOW_SECONDS = 0.4
SETTINGS = {
    "WEB_CONCURRENCY": "2",
    "SIGNUP_WEB_REPLICAS": str(WEB_REPLICAS),
    "SIGNUP_WEB_MAX_PER_NODE": "2",
    "SIGNUP_MAILER_REPLICAS": str(MAILER_REPLICAS),
    "SIGNUP_MAILER_MAX_PER_NODE": "1",
    "SIGNUP_DOUBLE_OPT_IN": "true",
    "DEFAULT_FROM_EMAIL": SENDER,
    "DJANGO_PUBLIC_URL": f"http://{NODE1.address}:{PORT}",
    "DJANGO_ALLOWED_HOSTS": ",".join(node.address for node in EDGES),
    "NGINX_SIGNUP_RATE": "100000r/s",
    "NGINX_SIGNUP_BURST": "100000",
    "NGINX_LOGIN_RATE": "100000r/s",
    "NGINX_LOGIN_BURST": "100000",
}
# docs/swarm-hosts.md's rebalance, without the pause between tasks and with
# a short monitor: the stack's 120 s watches for a bad release, and this is
# the same image.
REBALANCE = (
    *("--force", "--update-order", "stop-first"),
    *("--update-delay", "0s", "--update-monitor", "5s"),
)
LABELS = {NODE1: ("signup.db", "signup.edge"), NODE2: ("signup.edge",)}
# Each message the test SMTP server kept, base64 in a JSON list.
READ_INBOX = (
    "import base64, json, pathlib\n"
    "new = pathlib.Path('/srv/mail/inbox/new')\n"
    "files = sorted(new.iterdir()) if new.is_dir() else []\n"
    "print(json.dumps([base64.b64encode(f.read_bytes()).decode() for f in files]))\n"
)


def base(node):
    return f"http://{node.address}:{PORT}"


@pytest.fixture(scope="module")
def cluster(docker_engine):
    """The three nodes, each answering, forming one swarm of three managers."""
    silent = [node.name for node in nodes.NODES if not node.answers()]
    if silent:
        unavailable(
            f"the multi-host tests did not run: {', '.join(silent)} do not answer "
            f"(start them with {nodes.START_NODES})"
        )
    managers = NODE1.docker("info", "--format", "{{.Swarm.Managers}}").stdout.strip()
    if managers != "3":
        unavailable(f"the nodes' swarm has {managers} managers, not 3")
    if manager_statuses().get(NODE1.name) == "Leader":
        # An earlier run's losses can leave the lead with node1, which the
        # tests never lose: restart it while it runs nothing, so that
        # another manager leads.
        engine.docker("restart", NODE1.container)
        wait_for(NODE1.answers, timeout=60, interval=0.2, message="node1 answers")
        wait_for(
            lambda: (
                sorted(manager_statuses().items())
                in (
                    [
                        ("node1", "Reachable"),
                        ("node2", "Leader"),
                        ("node3", "Reachable"),
                    ],
                    [
                        ("node1", "Reachable"),
                        ("node2", "Reachable"),
                        ("node3", "Leader"),
                    ],
                )
            ),
            timeout=120,
            interval=0.5,
            message="a leader other than node1",
        )
    # A new leader counts the other nodes as Unknown until they report to it,
    # and places no task on them meanwhile.
    wait_for(
        lambda: node_statuses() == {node.name: "Ready" for node in nodes.NODES},
        timeout=120,
        interval=0.5,
        message="every node Ready",
    )
    return nodes.NODES


def node_statuses():
    out = NODE1.docker(
        "node", "ls", "--format", "{{.Hostname}} {{.Status}}", check=False
    ).stdout
    return dict(line.split(maxsplit=1) for line in out.splitlines() if " " in line)


def manager_statuses():
    """Hostname -> Leader, Reachable or Unreachable, as node1 sees them."""
    out = NODE1.docker(
        "node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}", check=False
    ).stdout
    return dict(line.split(maxsplit=1) for line in out.splitlines() if " " in line)


@pytest.fixture(scope="module")
def registry_images(cluster, run_prefix):
    """The site's images, the postgres stand-in and the test SMTP server in
    the nodes' registry; the prefix the nodes pull them by."""
    push_prefix = f"{nodes.registry_push_address()}/signup"
    tags = swarm.site_image_tags(push_prefix, VERSION)
    extra = {f"{push_prefix}/smtp:test": engine.SMTP_IMAGE}
    if selected() == STANDINS:
        extra[f"{push_prefix}/postgres-standin:test"] = engine.STANDIN_IMAGES[
            "postgres"
        ]
    try:
        swarm.push_site_images(push_prefix, VERSION, f"{run_prefix}-hosts-images")
        for tag, image in extra.items():
            tags.append(tag)
            engine.docker("tag", image, tag)
            engine.docker("push", tag, timeout=600)
        yield f"{nodes.REGISTRY_IN_NODES}/signup"
    finally:
        engine.docker("image", "rm", *tags, check=False)


@dataclass
class Hosts:
    """The deployed stack, seen through node1."""

    stack: Stack
    confirmed: list = field(default_factory=list)
    killed_mailers: int = 0

    def node_names(self):
        """Node ID -> (hostname, status, manager status); empty while the
        swarm has no leader to answer (during an election)."""
        out = NODE1.docker(
            "node",
            "ls",
            "--format",
            "{{.ID}} {{.Hostname}} {{.Status}} {{.ManagerStatus}}",
            check=False,
        ).stdout
        listing = {}
        for line in out.splitlines():
            node_id, hostname, status, *manager = line.split()
            listing[node_id] = (hostname, status, " ".join(manager))
        return listing

    def placement(self, short):
        """Hostnames of SHORT's running tasks on hosts that are up, counted;
        a lost host's tasks stay listed as running until it returns."""
        listing = self.node_names()
        counted = collections.Counter()
        try:
            tasks = self.stack.running_tasks(short)
        except engine.CommandFailed:  # no leader to answer, during an election
            return counted
        for task in tasks:
            hostname, status, _ = listing.get(task["NodeID"], ("", "", ""))
            if status == "Ready":
                counted[hostname] += 1
        return counted

    def managers(self):
        return {
            hostname: manager for hostname, _, manager in self.node_names().values()
        }

    def leader(self):
        (name,) = [n for n, manager in self.managers().items() if manager == "Leader"]
        return nodes.by_name(name)

    def wait_spread(self, short, replicas, *, without=(), timeout=240):
        """Wait until REPLICAS healthy tasks of SHORT run on hosts that are
        up, none on a host named in WITHOUT; return their placement."""

        def spread():
            counted = self.placement(short)
            if sum(counted.values()) != replicas or set(counted) & set(without):
                return None
            return counted

        return wait_for(
            spread, timeout=timeout, interval=0.5, message=f"{replicas} {short}"
        )

    def node_names_by_hostname(self):
        """Hostname -> (status, manager status)."""
        return {h: (s, m) for h, s, m in self.node_names().values()}

    def wait_node(self, node, status, manager, timeout=120):
        wait_for(
            lambda: self.node_names_by_hostname().get(node.name) == (status, manager),
            timeout=timeout,
            interval=0.5,
            message=f"{node.name} {status}",
        )

    def inbox(self):
        (task,) = self.stack.running_tasks("smtp")
        listing = NODE1.docker(
            "exec", self.stack.container(task), "python3", "-c", READ_INBOX
        ).stdout
        return [
            email.message_from_bytes(
                base64.b64decode(data), policy=email.policy.default
            )
            for data in json.loads(listing)
        ]


def kill(node):
    engine.docker("kill", node.container)


def start(node):
    engine.docker("start", node.container)
    wait_for(node.answers, timeout=60, interval=0.2, message=f"{node.name} answers")


class EdgeTraffic:
    """One traffic generator per edge host that is up."""

    def __init__(self, edges):
        self.loads = {node: traffic.Traffic(base(node)) for node in edges}

    def __enter__(self):
        for load in self.loads.values():
            load.__enter__()
        return self

    def __exit__(self, *exc):
        for load in self.loads.values():
            load.stop()

    def stop(self, node):
        """Stop sending to NODE (a load balancer taking it out)."""
        self.loads[node].stop()

    @property
    def outcomes(self):
        return [o for load in self.loads.values() for o in load.outcomes]

    @property
    def confirmed(self):
        return [e for load in self.loads.values() for e in load.confirmed]

    def failures(self):
        return [o for load in self.loads.values() for o in load.failures]

    def failed_signups(self):
        return [o for o in self.failures() if o.method == "POST"] + [
            o for o in self.failures() if o.path == "/thanks/"
        ]

    def report(self, since=None):
        """Counts, and the requests held up by a lost task's address: how
        many, the slowest, and when the last one began (after SINCE)."""
        slow = [o for o in self.outcomes if o.ok and o.seconds > SLOW_SECONDS]
        worst = max((o.seconds for o in self.outcomes if o.seconds), default=0)
        posts = sum(1 for o in self.outcomes if o.method == "POST")
        text = (
            f"{len(self.outcomes)} requests ({posts} sign-up POSTs), "
            f"{len(self.failures())} failed, {len(self.confirmed)} confirmed; "
            f"{len(slow)} slower than {SLOW_SECONDS} s, slowest {worst:.2f} s"
        )
        if slow and since is not None:
            last = max(o.at - o.seconds for o in slow) - since
            text += f", the last one begun {last:.1f} s after the loss"
        return text


@pytest.fixture(scope="module")
def hosts(cluster, registry_images, report_figure):
    """The stack deployed from nothing on the three hosts."""
    for node, labels in LABELS.items():
        adds = [arg for label in labels for arg in ("--label-add", f"{label}=true")]
        NODE1.docker("node", "update", *adds, node.name)
    env = site_environment(
        SIGNUP_REGISTRY=registry_images, SIGNUP_VERSION=VERSION, **SETTINGS
    )
    env.pop("DJANGO_SETTINGS_MODULE")
    files = (*swarm.stack_files(), MAIL_FILE, HOSTS_OVERRIDE)
    stack = Stack(
        STACK, env, files=files, engine_env={"DOCKER_HOST": NODE1.env()["DOCKER_HOST"]}
    )
    secret_values = {
        "django_secret_key": secrets.token_urlsafe(50),
        "postgres_password": secrets.token_urlsafe(24),
        "email_url": "smtp://smtp:1025",
    }
    remove_earlier_run(stack, secret_values)
    try:
        for key, value in secret_values.items():
            NODE1.docker("secret", "create", f"{STACK}_{key}", "-", input=value)
        started = time.monotonic()
        stack.deploy()
        site = Hosts(stack)
        wait_until_every_edge_answers(timeout=300)
        site.wait_spread("web", WEB_REPLICAS)
        site.wait_spread("mailer", MAILER_REPLICAS)
        report_figure(
            f"three hosts: stack deploy to both edges answering and every task "
            f"healthy: {time.monotonic() - started:.1f} s"
        )
        yield site
    finally:
        stack.print_logs("web", "nginx", "db", "mailer", tail=40)
        for node in nodes.NODES:
            if not node.answers():
                start(node)
        # The services and secrets go now, once a leader can remove them;
        # the tasks stop while the next tests run, and the volume goes at the
        # next run's start (or with the nodes, `.ci/swarm_nodes.py stop`).
        wait_for(
            lambda: stack.docker("stack", "rm", STACK, check=False).returncode == 0,
            timeout=120,
            interval=2,
            message="stack rm accepted",
        )
        for key in secret_values:
            NODE1.docker("secret", "rm", f"{STACK}_{key}", check=False)


def remove_earlier_run(stack, secret_values):
    """What an earlier run's fixture left to stop: its containers, networks,
    volume and secrets, so that this deploy starts from nothing."""
    stack.docker("stack", "rm", STACK, check=False)
    for node in nodes.NODES:
        wait_for(
            lambda n=node: (
                not n.docker(
                    "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={STACK}"
                ).stdout.strip()
            ),
            timeout=120,
            interval=1,
            message=f"an earlier run's containers gone from {node.name}",
        )
    stack.remove()
    stack.remove_volume("pgdata")
    for key in secret_values:
        NODE1.docker("secret", "rm", f"{STACK}_{key}", check=False)


def answers(url):
    try:
        return requests.get(url + "/", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_every_service_spreads_over_the_hosts_its_labels_allow(hosts):
    assert hosts.placement("web") == {"node1": 1, "node2": 1, "node3": 1}
    assert hosts.placement("nginx") == {"node1": 1, "node2": 1}
    assert hosts.placement("db") == {"node1": 1}
    mailers = hosts.placement("mailer")
    assert sum(mailers.values()) == MAILER_REPLICAS
    assert max(mailers.values()) == 1
    for node in EDGES:
        address = f"hosts-{node.name}-{uuid.uuid4().hex[:8]}@example.com"
        confirmed, outcomes = traffic.signup(base(node), address)
        assert confirmed, outcomes
        hosts.confirmed.append(address)
    assert hosts.stack.emails_stored(hosts.confirmed) == set(hosts.confirmed)


def rebalance(hosts):
    """docs/swarm-hosts.md's rebalance of web; the seconds until its update
    completed with one task on each host."""
    started = time.monotonic()
    hosts.stack.update("web", *REBALANCE)

    def even():
        return hosts.placement("web") == {"node1": 1, "node2": 1, "node3": 1} and (
            hosts.stack.update_status("web").get("State") == "completed"
        )

    wait_for(even, timeout=300, interval=1, message="web even over three hosts")
    return time.monotonic() - started


def test_a_drained_web_host_loses_no_signup_and_rebalances_when_active(
    hosts, report_figure
):
    with EdgeTraffic(EDGES) as load:
        time.sleep(2)
        started = time.monotonic()
        NODE1.docker("node", "update", "--availability", "drain", NODE3.name)
        hosts.wait_spread("web", WEB_REPLICAS, without=[NODE3.name])
        drained = time.monotonic() - started
        NODE1.docker("node", "update", "--availability", "active", NODE3.name)
        # Swarm never moves running tasks back by itself: a forced update
        # does, one task at a time. Stop-first, so that each new task is
        # placed once its old one is gone and the counts come out even
        # (start-first places it while the old one still counts).
        rebalanced = rebalance(hosts)
        time.sleep(2)

    report_figure(
        f"three hosts: drain of node3: its web task replaced in {drained:.1f} s; "
        f"rebalanced in {rebalanced:.1f} s; {load.report()}"
    )
    assert_nothing_failed_and_all_stored(hosts, load)


def lose_under_load(hosts, report_figure, victim, *, lost, what):
    """Under traffic to the edge hosts, kill VICTIM's node container (after
    stopping the traffic to it, if it is an edge host); wait until LOST()
    holds and its web tasks run elsewhere (the mail test at the end waits
    for the mailers); start it again and wait until it is back. Report WHAT
    with the times; then nothing may have failed, and every confirmed
    sign-up must be stored."""
    wait_until_every_edge_answers()
    hosts.killed_mailers += hosts.placement("mailer")[victim.name]
    with EdgeTraffic(EDGES) as load:
        time.sleep(2)
        if victim in EDGES:
            load.stop(victim)
        killed = time.monotonic()
        kill(victim)
        try:
            wait_for(lost, timeout=120, interval=0.5, message=f"{victim.name} lost")
            lost_after = time.monotonic() - killed
            hosts.wait_spread("web", WEB_REPLICAS, without=[victim.name])
            replaced = time.monotonic() - killed
        finally:
            # Back for the next test, whatever failed here.
            started = time.monotonic()
            start(victim)
        hosts.wait_node(victim, "Ready", "Reachable")
        if victim in EDGES:
            wait_for(lambda: answers(base(victim)), timeout=120, interval=0.5)
        back = time.monotonic() - started
        time.sleep(2)

    report_figure(
        f"three hosts: {what} after {lost_after:.1f} s, its web tasks on the "
        f"other hosts after {replaced:.1f} s; back {back:.1f} s after its start; "
        f"{load.report(since=killed)}"
    )
    assert_nothing_failed_and_all_stored(hosts, load)


def wait_until_every_edge_answers(timeout=120):
    for node in EDGES:
        wait_for(
            lambda n=node: answers(base(n)),
            timeout=timeout,
            interval=0.5,
            message=f"a 200 from {node.name}",
        )


def down(hosts, node):
    return lambda: (
        hosts.node_names_by_hostname().get(node.name)
        == (
            "Down",
            "Unreachable",
        )
    )


def assert_three_managers(hosts):
    """Three managers, one leading; their statuses by hostname. A node
    demoted and promoted again can stay a non-manager: checked before a loss."""
    managers = hosts.managers()
    assert sorted(managers.values()) == ["Leader", "Reachable", "Reachable"], managers
    return managers


def assert_nothing_failed_and_all_stored(hosts, load):
    hosts.confirmed += load.confirmed
    assert not load.failures(), load.failures()[:5]
    assert hosts.stack.emails_stored(load.confirmed) == set(load.confirmed)


def test_a_killed_web_host_loses_no_signup_and_rejoins(hosts, report_figure):
    # Not the leader (the next test loses that one), nor the database's host;
    # node3, which takes no traffic, unless it leads.
    victim = NODE3 if hosts.leader() != NODE3 else NODE2
    lose_under_load(
        hosts,
        report_figure,
        victim,
        lost=down(hosts, victim),
        what=f"{victim.name} killed: Down",
    )


def test_the_killed_leader_is_replaced_and_no_signup_is_lost(hosts, report_figure):
    assert_three_managers(hosts)
    leader = hosts.leader()
    assert leader != NODE1, "the tests never lose the database's host"

    def new_leader():
        managers = hosts.managers()
        return managers.get(leader.name) == "Unreachable" and "Leader" in (
            managers.values()
        )

    lose_under_load(
        hosts,
        report_figure,
        leader,
        lost=new_leader,
        what=f"leader {leader.name} killed: a new leader",
    )


def test_a_killed_edge_host_leaves_the_other_edges_answering(hosts, report_figure):
    role = assert_three_managers(hosts)[NODE2.name]
    held = hosts.placement("web")[NODE2.name]
    # The traffic to node1, the other edge host, must not fail meanwhile.
    lose_under_load(
        hosts,
        report_figure,
        NODE2,
        lost=down(hosts, NODE2),
        what=f"edge host node2 ({role}, {held} web task(s)) killed: Down",
    )


def test_the_mail_queue_lost_and_doubled_nothing_across_killed_mailer_hosts(
    hosts, report_figure
):
    # Two mailers, at most one per host, and node2 and node3 each lost: at
    # least one mailer went down with its host (a guard on the set-up).
    assert hosts.killed_mailers >= 1
    addresses = set(hosts.confirmed)
    assert len(addresses) == len(hosts.confirmed)
    listed = ",".join(f"'{address}'" for address in addresses)

    def all_sent():
        statuses = hosts.stack.sql(
            "SELECT m.status, count(*) FROM accounts_outgoingmail m JOIN"
            f" accounts_signup s ON s.id = m.signup_id WHERE s.email IN ({listed})"
            " GROUP BY m.status"
        )
        return statuses == f"sent|{len(addresses)}" and statuses

    wait_for(all_sent, timeout=120, interval=1, message="every queued mail sent")
    received = collections.defaultdict(list)
    for message in hosts.inbox():
        for recipient in message.get_all("X-RcptTo", []):
            received[recipient].append(message["Message-ID"])
    missing = addresses - set(received)
    # A mailer killed between the server's answer and its commit sends that
    # one mail again, under the same Message-ID (docs/mail.md).
    repeated = {
        a: ids for a, ids in received.items() if a in addresses and len(ids) > 1
    }
    report_figure(
        f"three hosts: {len(addresses)} sign-ups mailed across "
        f"{hosts.killed_mailers} mailer(s) lost with their host: {len(missing)} "
        f"lost, {len(repeated)} sent twice"
    )
    assert not missing
    assert all(len(set(ids)) == 1 for ids in repeated.values()), repeated
    assert len(repeated) <= hosts.killed_mailers
