"""
A replica lost mid-request, as a host that dies under it: nginx's template
sends the request to another replica when that is safe. The upstream name
resolves to two replicas (as Docker's DNS answers for two tasks): the echo
server, and one that reads each request and then drops the connection with
a reset, which nginx sees as an error after the request was sent.

The sign-up form's POST is sent again (an address already stored stays as it
is, so sending it twice does no harm); any other POST is not (an admin action
must not run twice), and every GET is.
"""

import socket
import struct
import threading

import pytest
import requests

from loopback.nginx import UPSTREAM_NAME
from tests.support.stack import nginx_before_echo

LIVE, LOST = "127.0.0.1", "127.0.0.2"
ATTEMPTS = 10


class LostReplica:
    """Accepts on LOST:PORT, reads a request, resets the connection."""

    def __init__(self, port):
        self.received = []
        self._socket = socket.create_server((LOST, port))
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.received.append(data.split(b" ", 2)[:2])
                # SO_LINGER 0: close with RST, as a connection to a lost
                # host ends for nginx once its keepalive probes go unanswered.
                connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()


@pytest.fixture
def two_replicas(nginx_binary):
    with nginx_before_echo("signup-lost-", upstream_host=UPSTREAM_NAME, records={}) as (
        nginx,
        upstream,
        dns,
    ):
        lost = LostReplica(upstream.port)
        dns.records[UPSTREAM_NAME] = [LOST, LIVE]
        try:
            yield nginx, upstream, lost
        finally:
            lost.close()


def send(nginx, method, path):
    return requests.request(
        method, nginx.url(path), data={"email": "a@example.com"}, timeout=15
    ).status_code


def test_a_signup_post_goes_to_another_replica_when_its_replica_is_lost(
    two_replicas,
):
    nginx, live, lost = two_replicas

    statuses = [send(nginx, "POST", "/") for _ in range(ATTEMPTS)]

    assert statuses == [200] * ATTEMPTS
    assert [r["method"] for r in live.requests] == ["POST"] * ATTEMPTS
    assert [b"POST", b"/"] in lost.received


def test_any_other_post_is_never_sent_twice(two_replicas):
    nginx, live, lost = two_replicas

    statuses = [send(nginx, "POST", "/elsewhere/") for _ in range(ATTEMPTS)]

    reached_lost = sum(1 for r in lost.received if r == [b"POST", b"/elsewhere/"])
    assert reached_lost >= 1
    assert statuses.count(502) == reached_lost
    assert statuses.count(200) == ATTEMPTS - reached_lost == len(live.requests)


def test_a_get_goes_to_another_replica(two_replicas):
    nginx, live, lost = two_replicas

    statuses = [send(nginx, "GET", "/elsewhere/") for _ in range(ATTEMPTS)]

    assert statuses == [200] * ATTEMPTS
    assert len(live.requests) == ATTEMPTS
    assert [b"GET", b"/elsewhere/"] in lost.received
