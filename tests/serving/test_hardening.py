"""
The site's hardening through nginx, as a client sees it: security headers on
every class of response, Host and forwarding-header trust, size and time limits, and
rate limits.
"""

import http.client
import re
import socket
import threading
import time
import uuid

import pytest
import requests

from loopback.nginx import IMAGE_RATE_LIMITS
from tests.support.stack import ServingStack, assert_branded_error_page

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": (
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
    ),
}


def raw_headers(response):
    """Every header line as sent (requests folds repeated headers into one)."""
    return [(name.lower(), value) for name, value in response.raw.headers.items()]


def check_security_headers(response):
    headers = raw_headers(response)
    names = [name for name, _ in headers]
    doubled = {name for name in names if names.count(name) > 1}
    assert not doubled, f"sent twice: {doubled}"
    values = dict(headers)
    for name, expected in SECURITY_HEADERS.items():
        assert values.get(name.lower()) == expected, (name, values)
    csp = values["content-security-policy"]
    script_src = re.search(r"(?:^|;)\s*script-src ([^;]*)", csp).group(1)
    assert "'unsafe-inline'" not in script_src
    assert "'unsafe-eval'" not in script_src
    for directive in ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
        assert directive in csp
    assert values["server"] == "nginx"  # no version
    assert "strict-transport-security" not in values  # the public URL is http
    assert "x-powered-by" not in values


@pytest.fixture(scope="module")
def limited_nginx(serving_stack):
    """A second nginx in front of the same site with the image's rate limits."""
    nginx = serving_stack.make_nginx("limited", **IMAGE_RATE_LIMITS)
    return nginx.start().wait_ready()


def every_kind_of_response(stack, limited):
    admin_css = re.search(
        r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"',
        stack.get("/admin/login/").text,
    ).group(1)
    token, cookie = stack.csrf_pair()
    rate_limited = None
    for _ in range(30):
        response = stack.sign_up("Flood", "flood@example.com", nginx=limited)
        if response.status_code == 429:
            rate_limited = response
            break
    return {
        "form page": stack.get("/"),
        "redirect": stack.sign_up("Headers", f"h-{uuid.uuid4().hex[:8]}@example.com"),
        "thank-you page": stack.get("/thanks/"),
        "403 csrf": stack.post("/", data={"name": "x", "email": "x@example.com"}),
        "404": stack.get("/no-such-page/"),
        "400 unknown host": stack.get("/", headers={"Host": "evil.example"}),
        "405": stack.request("OPTIONS", "/"),
        "413": stack.post("/", data={"name": "x" * 70_000}),
        "429": rate_limited,
        "static hashed": stack.get(admin_css),
        "static plain": stack.get("/static/site/site.css"),
        "static 404": stack.get("/static/no-such-file.css"),
        "admin login": stack.get("/admin/login/"),
        "admin redirect": stack.get("/admin/"),
        "probe from outside": stack.get("/readyz"),
        "token reuse": stack.sign_up(
            "Again", "again@example.com", pair=(token, cookie)
        ),
    }


def test_every_class_of_response_carries_the_security_headers_once(
    serving_stack, limited_nginx
):
    responses = every_kind_of_response(serving_stack, limited_nginx)

    assert responses["429"] is not None, "the rate limit never answered 429"
    assert {name: r.status_code for name, r in responses.items()} == {
        "form page": 200,
        "redirect": 302,
        "thank-you page": 200,
        "403 csrf": 403,
        "404": 404,
        "400 unknown host": 400,
        "405": 405,
        "413": 413,
        "429": 429,
        "static hashed": 200,
        "static plain": 200,
        "static 404": 404,
        "admin login": 200,
        "admin redirect": 302,
        "probe from outside": 404,
        "token reuse": 302,
    }
    for name, response in responses.items():
        try:
            check_security_headers(response)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


def test_branded_502_carries_the_security_headers(serving_stack):
    stack = serving_stack
    stack.gunicorn.stop()
    try:
        response = stack.get("/")
    finally:
        stack.restart_gunicorn()

    assert_branded_error_page(response, 502, "Back in a moment")
    check_security_headers(response)
    assert response.headers["Retry-After"] == "10"


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.2"],
)
@pytest.mark.parametrize("path", ["/", "/admin/", "/thanks/"])
def test_an_unknown_host_never_gets_a_200_or_a_redirect_to_it(
    serving_stack, host, path
):
    response = serving_stack.get(path, headers={"Host": host})

    assert response.status_code == 400
    assert host not in response.headers.get("Location", "")
    assert host not in response.text


SPOOFED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-For": "203.0.113.7",
    "X-Real-IP": "203.0.113.7",
    "Forwarded": "for=203.0.113.7;proto=https;host=evil.example",
}


def test_forwarding_headers_from_a_client_change_nothing(serving_stack):
    stack = serving_stack
    plain = stack.get("/admin/")
    spoofed = stack.get("/admin/", headers=SPOOFED)
    email = f"spoof-{uuid.uuid4().hex[:8]}@example.com"
    signup = stack.sign_up("Spoof", email, headers=SPOOFED)

    # No HTTPS assumption, no foreign host in a redirect.
    assert spoofed.status_code == plain.status_code == 302
    assert spoofed.headers["Location"] == plain.headers["Location"]
    assert spoofed.headers["Location"].startswith("/admin/login/")
    assert "strict-transport-security" not in spoofed.headers
    assert signup.status_code == 302
    assert signup.headers["Location"] == "/thanks/"
    # The logs keep the real client address.
    line = stack.gunicorn.access_log.wait_for_line(
        f"rid={signup.headers['X-Request-ID']} "
    )
    assert line.startswith("127.0.0.1 ")
    assert "203.0.113.7" not in line


def test_a_trusted_tls_proxy_is_believed_and_nobody_else(echo_proxy, serving_stack):
    """With NGINX_TRUSTED_PROXY naming the proxy in front, its X-Forwarded-Proto
    and X-Forwarded-For reach the site; the default trusts no client."""
    nginx, upstream = echo_proxy
    trusting = (
        serving_stack.make_nginx(
            "trusting",
            NGINX_UPSTREAM=f"127.0.0.1:{upstream.port}",
            NGINX_TRUSTED_PROXY="127.0.0.1/32",
        )
        .start()
        .wait_ready()
    )
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.4"}

    def seen(through):
        upstream.requests.clear()
        connection = http.client.HTTPConnection("127.0.0.1", through.port, timeout=10)
        connection.request("GET", "/", headers={"Host": "localhost", **headers})
        connection.getresponse().read()
        connection.close()
        return {name.lower(): value for name, value in upstream.requests[0]["headers"]}

    untrusted, trusted = seen(nginx), seen(trusting)

    assert (untrusted["x-forwarded-proto"], untrusted["x-forwarded-for"]) == (
        "http",
        "127.0.0.1",
    )
    assert (trusted["x-forwarded-proto"], trusted["x-forwarded-for"]) == (
        "https",
        "198.51.100.4",
    )


def post_from(address, nginx, path="/", body=b"name=x&email=x%40example.com"):
    """A POST from local address ADDRESS (127.0.0.0/8 is all this machine's)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", nginx.port, timeout=10, source_address=(address, 0)
    )
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={
                "Host": f"localhost:{nginx.port}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("path", "burst"),
    [
        ("/", int(IMAGE_RATE_LIMITS["NGINX_SIGNUP_BURST"])),
        ("/admin/login/", int(IMAGE_RATE_LIMITS["NGINX_LOGIN_BURST"])),
    ],
)
def test_posts_are_rate_limited_per_client_with_a_branded_429(
    serving_stack, path, burst
):
    nginx = (
        serving_stack.make_nginx(
            f"rate-{path.strip('/').replace('/', '-') or 'root'}", **IMAGE_RATE_LIMITS
        )
        .start()
        .wait_ready()
    )
    # 5r/m admits the first POST plus the burst; the next ones are refused.
    statuses = [post_from("127.0.0.3", nginx, path)[0] for _ in range(burst + 3)]

    assert 429 not in statuses[: burst + 1], statuses
    assert statuses[burst + 1 :] == [429, 429]
    status, headers, body = post_from("127.0.0.3", nginx, path)
    assert status == 429
    assert headers["Retry-After"] == "60"
    assert b"<h1>Too many attempts</h1>" in body
    # GETs from the same client are never limited ...
    for _ in range(20):
        assert serving_stack.get(path, nginx=nginx).status_code == 200
    # ... another client is not throttled by this one's flood ...
    assert post_from("127.0.0.4", nginx, path)[0] != 429
    # ... and a forged X-Forwarded-For does not make a new client.
    connection = http.client.HTTPConnection(
        "127.0.0.1", nginx.port, timeout=10, source_address=("127.0.0.3", 0)
    )
    connection.request(
        "POST",
        path,
        body=b"name=x",
        headers={
            "Host": f"localhost:{nginx.port}",
            "X-Forwarded-For": "198.51.100.77",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert connection.getresponse().status == 429
    connection.close()


MOVED_ADMIN = "office/desk-7f3a/"


@pytest.fixture(scope="module")
def moved_admin_stack(nginx_binary):
    """The stack with DJANGO_ADMIN_URL moved, the one variable Compose gives
    both web and nginx, and the image's rate limits."""
    from django.conf import settings

    stack = ServingStack(
        settings.DATABASES["default"], DJANGO_ADMIN_URL=MOVED_ADMIN
    ).start()
    nginx = stack.make_nginx("moved-admin", **IMAGE_RATE_LIMITS).start().wait_ready()
    yield stack, nginx
    stack.stop()


def test_a_moved_admin_takes_its_login_rate_limit_along(moved_admin_stack):
    stack, nginx = moved_admin_stack
    login = f"/{MOVED_ADMIN}login/"
    burst = int(IMAGE_RATE_LIMITS["NGINX_LOGIN_BURST"])

    page = stack.get(login, nginx=nginx)
    old_page = stack.get("/admin/login/", nginx=nginx)
    statuses = [post_from("127.0.0.5", nginx, login)[0] for _ in range(burst + 3)]
    old_statuses = [
        post_from("127.0.0.6", nginx, "/admin/login/")[0] for _ in range(10)
    ]

    assert page.status_code == 200
    assert "Log in" in page.text
    assert old_page.status_code == 404
    assert 429 not in statuses[: burst + 1], statuses
    assert statuses[burst + 1 :] == [429, 429]
    # The old path is only a page that is not there, and counts for nothing.
    assert old_statuses == [404] * 10


def chunked_post(port, size):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST / HTTP/1.1\r\nHost: localhost:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"a" * 8192
        sent = 0
        try:
            while sent < size:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return sock.recv(65536).decode("latin-1")


def test_an_oversized_chunked_body_gets_413_and_never_reaches_gunicorn(serving_stack):
    reply = chunked_post(serving_stack.nginx.port, 200_000)

    assert reply.startswith("HTTP/1.1 413 ")
    request_id = re.search(r"X-Request-ID: ([0-9a-f]{32})", reply).group(1)
    assert not serving_stack.gunicorn_saw(request_id)


def test_oversized_request_lines_and_headers_get_4xx(serving_stack):
    long_line = serving_stack.get("/?q=" + "a" * 20_000)
    big_header = serving_stack.get("/", headers={"X-Filler": "b" * 20_000})

    assert long_line.status_code == 414
    assert big_header.status_code == 400


def test_too_many_form_fields_get_400(serving_stack):
    token, cookie = serving_stack.csrf_pair()
    fields = "&".join(f"f{i}=1" for i in range(1100))
    response = serving_stack.post(
        "/",
        data=f"csrfmiddlewaretoken={token}&{fields}",
        headers={
            "Cookie": f"csrftoken={cookie}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )

    assert response.status_code == 400


def test_slow_clients_are_cut_off_by_nginx_without_starving_gunicorn(serving_stack):
    """Slowloris: many connections that send a request line or a body a trickle
    at a time. nginx holds them (gunicorn never sees them) and drops them after
    its 10 s timeouts, while real requests keep being served."""
    port = serving_stack.nginx.port
    marker = uuid.uuid4().hex
    results = {}

    def slow_client(index, body):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            head = f"POST /?slow={marker} HTTP/1.1\r\nHost: localhost:{port}\r\n"
            if body:
                head += "Content-Length: 1000\r\n\r\nname="
            sock.sendall(head.encode())
            started = time.monotonic()
            try:
                data = sock.recv(4096)  # nginx answers 408 or just closes
            except (ConnectionResetError, TimeoutError):
                data = b""
            results[index] = (time.monotonic() - started, data[:12])

    threads = [
        threading.Thread(target=slow_client, args=(i, i % 2 == 0)) for i in range(20)
    ]
    for thread in threads:
        thread.start()
    served = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        served.append(serving_stack.get("/").status_code)
    for thread in threads:
        thread.join(timeout=30)

    assert served
    assert set(served) == {200}
    assert len(results) == 20
    assert all(8 <= waited <= 20 for waited, _ in results.values()), results
    assert not serving_stack.gunicorn.access_log.matching(f"slow={marker}")


def raw_exchange(port, request):
    """Send REQUEST (bytes, exactly as given) to nginx; return the whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply.decode("latin-1")


def status_of(reply):
    return int(reply.split(" ", 2)[1])


@pytest.mark.parametrize(
    ("target", "host", "status"),
    [
        ("http://evil.example/", "localhost:{port}", 400),
        ("http://evil.example:8080/thanks/", "localhost:{port}", 400),
        ("https://evil.example/", "localhost:{port}", 400),
        ("http://localhost:{port}/", "evil.example", 200),
    ],
)
def test_an_absolute_form_target_is_judged_by_its_own_host(
    serving_stack, target, host, status
):
    """RFC 9112 section 3.2.2: the request line's host is the authority, not
    the Host header next to it; an unknown one gets Django's 400."""
    port = serving_stack.nginx.port
    reply = raw_exchange(
        port,
        f"GET {target.format(port=port)} HTTP/1.1\r\nHost: {host.format(port=port)}\r\n"
        "Connection: close\r\n\r\n".encode(),
    )

    assert status_of(reply) == status, reply[:300]
    assert ("Hello, please sign up!" in reply) is (status == 200)
    if status == 400:
        assert "evil.example" not in reply


def test_the_host_in_an_absolute_form_target_is_what_the_site_receives(echo_proxy):
    nginx, upstream = echo_proxy
    marker = uuid.uuid4().hex
    reply = raw_exchange(
        nginx.port,
        f"GET http://Site.Example:8443/?m={marker} HTTP/1.1\r\n"
        f"Host: localhost:{nginx.port}\r\nConnection: close\r\n\r\n".encode(),
    )
    received = [r for r in upstream.requests if marker in r["path"]]

    assert status_of(reply) == 200, reply[:300]
    assert len(received) == 1
    hosts = [value for name, value in received[0]["headers"] if name.lower() == "host"]
    assert hosts == ["Site.Example:8443"]
    assert received[0]["path"] == f"/?m={marker}"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("HEAD", "/readyz"),
        ("GET", "/readyz?format=json"),
        ("GET", "//readyz"),
        ("GET", "/%72eadyz"),
    ],
)
def test_the_probes_are_not_answered_to_the_public(serving_stack, method, path):
    """Whether the database is up is for the orchestrator, which asks web
    directly; through nginx the probes are a page that is not there."""
    stack = serving_stack
    response = stack.request(method, path)
    direct = requests.get(f"http://127.0.0.1:{stack.gunicorn.port}/readyz", timeout=10)

    assert response.status_code == 404
    assert not stack.gunicorn_saw(response.headers["X-Request-ID"])
    if method == "GET":
        assert_branded_error_page(response, 404, "Page not found")
        assert "status" not in response.text
    check_security_headers(response)
    assert direct.status_code == 200
    assert direct.json() == {"status": "ready"}


HSTS = "max-age=600; includeSubDomains; preload"


@pytest.fixture(scope="module")
def https_stack(nginx_binary):
    """The stack with an https:// public URL behind a TLS proxy on 127.0.0.1
    (NGINX_TRUSTED_PROXY): HSTS from Django's variables, for both layers."""
    from django.conf import settings

    stack = ServingStack(
        settings.DATABASES["default"],
        DJANGO_PUBLIC_URL="https://localhost",
        DJANGO_HSTS_SECONDS="600",
    ).start()
    trusting = (
        stack.make_nginx("https-proxied", NGINX_TRUSTED_PROXY="127.0.0.1/32")
        .start()
        .wait_ready()
    )
    limited = (
        stack.make_nginx("https-limited", **IMAGE_RATE_LIMITS).start().wait_ready()
    )
    yield stack, trusting, limited
    stack.stop()


def test_with_an_https_public_url_every_response_carries_hsts_once(https_stack):
    stack, trusting, limited = https_stack
    tls = {"X-Forwarded-Proto": "https"}
    flood = [stack.post("/", nginx=limited, data={"name": "x"}) for _ in range(8)]
    responses = {
        "Django's page": stack.get("/", nginx=trusting, headers=tls),
        "Django's 404": stack.get("/no-such-page/", nginx=trusting, headers=tls),
        "Django's https redirect": stack.get("/"),
        "static file": stack.get("/static/site/site.css"),
        "static 404": stack.get("/static/no-such-file.css"),
        "probe 404": stack.get("/readyz"),
        "413": stack.post("/", data={"name": "x" * 70_000}),
        "429": flood[-1],
    }
    stack.gunicorn.stop()
    try:
        responses["502"] = stack.get("/", nginx=trusting, headers=tls)
    finally:
        stack.restart_gunicorn()

    assert {name: r.status_code for name, r in responses.items()} == {
        "Django's page": 200,
        "Django's 404": 404,
        "Django's https redirect": 301,
        "static file": 200,
        "static 404": 404,
        "probe 404": 404,
        "413": 413,
        "429": 429,
        "502": 502,
    }
    for name, response in responses.items():
        sent = [
            value
            for header, value in raw_headers(response)
            if header == "strict-transport-security"
        ]
        assert sent == [HSTS], (name, sent)
