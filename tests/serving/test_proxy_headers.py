"""
What reaches the application through the template, observed exactly: nginx
in front of a server that records the headers it receives.
"""

import re
import uuid

import requests

SPOOFED = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Real-IP": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Ssl": "on",
    "X-Forwarded-Protocol": "ssl",
    "Forwarded": "for=203.0.113.9;proto=https;host=evil.example",
    "X-Request-ID": "chosen-by-the-client",
    "Proxy": "http://evil.example:3128",
}


def fetch(nginx, upstream, path, headers=None):
    """GET PATH through NGINX; return the response and what UPSTREAM got."""
    marker = uuid.uuid4().hex
    separator = "&" if "?" in path else "?"
    response = requests.get(
        nginx.url(f"{path}{separator}marker={marker}"),
        headers={"Host": f"localhost:{nginx.port}", **(headers or {})},
        timeout=10,
    )
    received = [r for r in upstream.requests if marker in r["path"]]
    return response, received


def test_only_nginxs_own_forwarding_headers_reach_the_site(echo_proxy):
    nginx, upstream = echo_proxy

    response, received = fetch(nginx, upstream, "/anything", SPOOFED)

    assert response.status_code == 200
    assert len(received) == 1
    names = [name.lower() for name, _ in received[0]["headers"]]
    headers = {name.lower(): value for name, value in received[0]["headers"]}
    assert len(names) == len(set(names)), names  # none doubled
    assert headers["host"] == f"localhost:{nginx.port}"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    assert headers["x-request-id"] == response.headers["X-Request-ID"]
    for cleared in (
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-ssl",
        "x-forwarded-protocol",
        "forwarded",
        "proxy",
    ):
        assert cleared not in headers, cleared


def test_each_request_gets_its_own_id(echo_proxy):
    nginx, upstream = echo_proxy

    ids = {fetch(nginx, upstream, "/")[0].headers["X-Request-ID"] for _ in range(5)}

    assert len(ids) == 5


def test_the_sites_own_error_responses_pass_through_unchanged(echo_proxy):
    """Like Django's 503 page: nginx's branded page is only for its own errors."""
    nginx, upstream = echo_proxy

    unavailable, received = fetch(nginx, upstream, "/?status=503")
    failed, _ = fetch(nginx, upstream, "/?status=500")

    assert len(received) == 1  # passed once, not retried
    assert unavailable.status_code == 503
    assert unavailable.headers["Content-Type"] == "application/json"
    assert unavailable.json() == {"echo": True, "status": 503}
    assert failed.status_code == 500
    assert failed.json() == {"echo": True, "status": 500}
