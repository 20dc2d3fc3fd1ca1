"""
nginx resolves the upstream name again while it runs, as `docker compose up
--scale web=N` needs: the stack's nginx finds gunicorn as ``web`` through a
DNS server that answers like Docker's (600 s TTL, NXDOMAIN for a service with
no running container).
"""

import time

from loopback.nginx import UPSTREAM_NAME
from loopback.processes import wait_for
from tests.support.stack import PROXIED_PROBE

REQUEST_INTERVAL = 0.2


def test_the_upstream_name_is_resolved_again_every_five_seconds(serving_stack):
    stack = serving_stack
    dns = stack.dns
    already = len(dns.queries_for(UPSTREAM_NAME))

    def two_new_queries():
        response = stack.get(PROXIED_PROBE)
        assert response.status_code == 200, response.text[:300]
        time.sleep(REQUEST_INTERVAL)
        new = dns.queries_for(UPSTREAM_NAME)[already:]
        return new if len(new) >= 2 else None

    first, second = wait_for(
        two_new_queries, timeout=20, interval=0, message="two lookups of web"
    )[:2]

    # valid=5s, not the answer's 600 s TTL; requests in between used the cache.
    assert 4 <= second - first <= 8, second - first


def test_nginx_follows_the_name_disappearing_and_coming_back(serving_stack):
    stack = serving_stack
    dns = stack.dns
    try:
        dns.records[UPSTREAM_NAME] = None  # every replica gone
        gone = stack.wait_for_status("/", 502, timeout=12)
    finally:
        dns.records[UPSTREAM_NAME] = "127.0.0.1"
    back = stack.wait_for_status("/", 200, timeout=12)

    assert "<h1>Back in a moment</h1>" in gone.text
    assert "Hello, please sign up!" in back.text
