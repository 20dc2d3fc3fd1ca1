"""
Requests through nginx to gunicorn, Django and PostgreSQL on loopback
(tests/support/stack.py): the sign-up itself, static files, request ids and
client addresses in the logs, the body limit, and gunicorn going away.
"""

import gzip
import re
import uuid

from loopback.nginx import TEMPLATE
from tests.support.stack import assert_branded_error_page

REQUEST_ID = re.compile(r"[0-9a-f]{32}")
HASHED_BASE_CSS = re.compile(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"')


def unique_email():
    return f"ada-{uuid.uuid4().hex[:10]}@example.com"


def sign_up(stack, name, email, *, nginx=None):
    return stack.sign_up(name, email, nginx=nginx)


def test_signup_through_nginx_passes_csrf_and_is_stored(serving_stack):
    stack = serving_stack
    email = unique_email()
    # The premise that makes this test catch a Host without its port: the
    # browser's origin is not the site's configured public URL.
    assert stack.public_url != f"http://{stack.browser_host}"

    response = sign_up(stack, "Ada Lovelace", email)

    assert response.status_code == 302, response.text[:500]
    assert response.headers["Location"] == "/thanks/"
    assert stack.signups(email) == [("Ada Lovelace", email)]
    thanks = stack.get("/thanks/")
    assert "Thank you for signing up!" in thanks.text


def test_the_same_signup_fails_csrf_if_nginx_drops_the_port_from_host(serving_stack):
    """The trap the test above guards against: with Host $host Django sees
    "localhost" and refuses the browser's Origin http://localhost:<port>."""
    stack = serving_stack
    text = TEMPLATE.read_text()
    assert text.count("proxy_set_header Host $signup_host;") == 1
    nginx = stack.make_nginx(
        "nginx-host-without-port",
        template_text=text.replace("Host $signup_host;", "Host $host;"),
    )
    nginx.start().wait_ready()
    email = unique_email()
    try:
        response = sign_up(stack, "Ada Lovelace", email, nginx=nginx)
    finally:
        nginx.stop()

    assert response.status_code == 403
    assert stack.signups(email) == []


def test_admin_css_is_served_by_nginx_with_cache_headers(serving_stack):
    stack = serving_stack
    login = stack.get("/admin/login/")
    assert login.status_code == 200
    hashed_path = HASHED_BASE_CSS.search(login.text).group(1)

    hashed = stack.get(hashed_path)
    plain = stack.get("/static/admin/css/base.css")

    assert hashed.status_code == 200
    assert hashed.headers["Content-Type"] == "text/css"
    assert hashed.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert (
        hashed.content
        == (stack.static_root / hashed_path.removeprefix("/static/")).read_bytes()
    )
    assert plain.status_code == 200
    assert plain.headers["Cache-Control"] == "public, max-age=600"
    assert plain.content == (stack.static_root / "admin/css/base.css").read_bytes()
    for response in (hashed, plain):
        request_id = response.headers["X-Request-ID"]
        nginx_line = stack.nginx.access_log.wait_for_line(f"rid={request_id}")
        assert " upstream=- " in nginx_line
        assert not stack.gunicorn_saw(request_id)
    assert stack.gunicorn.access_log.matching("/static/") == []


def test_missing_static_files_and_directories_are_404_from_nginx(serving_stack):
    stack = serving_stack

    for path in (
        "/static/admin/css/missing.css",
        "/static/admin/css/missing.0123456789ab.css",
        "/static/admin/",
        "/static/admin",
    ):
        response = stack.get(path)
        assert response.status_code == 404, path
        assert "Index of" not in response.text
        request_id = response.headers["X-Request-ID"]
        assert not stack.gunicorn_saw(request_id), path


def test_text_is_gzipped_when_the_client_asks(serving_stack):
    stack = serving_stack
    path = "/static/admin/css/base.css"
    on_disk = (stack.static_root / "admin/css/base.css").read_bytes()

    compressed = stack.get(path, headers={"Accept-Encoding": "gzip"}, stream=True)
    raw = compressed.raw.read(decode_content=False)
    identity = stack.get(path, headers={"Accept-Encoding": "identity"})
    page = stack.get("/", headers={"Accept-Encoding": "gzip"})

    assert compressed.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in compressed.headers["Vary"]
    assert gzip.decompress(raw) == on_disk
    assert len(raw) < len(on_disk) / 2
    assert "Content-Encoding" not in identity.headers
    assert identity.content == on_disk
    assert page.headers["Content-Encoding"] == "gzip"
    assert "Hello, please sign up!" in page.text


def test_request_id_and_client_address_reach_gunicorns_log(serving_stack):
    stack = serving_stack

    response = stack.get(
        "/",
        headers={
            "X-Request-ID": "chosen-by-the-client",
            "X-Forwarded-For": "203.0.113.9",
            "X-Real-IP": "203.0.113.9",
        },
    )

    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    assert REQUEST_ID.fullmatch(request_id)
    gunicorn_line = stack.gunicorn.access_log.wait_for_line(f"rid={request_id} ")
    nginx_line = stack.nginx.access_log.wait_for_line(f"rid={request_id} ")
    # The client as nginx saw it (this test's 127.0.0.1), not what it claimed.
    assert gunicorn_line.startswith("127.0.0.1 [")
    assert '"GET / HTTP/1.1" 200 ' in gunicorn_line
    assert re.search(r" rt=\d+\.\d+ ", gunicorn_line)
    assert "203.0.113.9" not in gunicorn_line
    assert "chosen-by-the-client" not in gunicorn_line
    assert nginx_line.startswith("127.0.0.1 [")
    assert f" upstream=127.0.0.1:{stack.gunicorn.port} " in nginx_line
    assert re.search(r" rt=\d+\.\d+ ", nginx_line)


def test_an_oversized_post_gets_413_from_nginx_and_never_reaches_gunicorn(
    serving_stack,
):
    stack = serving_stack
    email = unique_email()

    response = stack.post(
        "/",
        data={"name": "x" * 200_000, "email": email},
        headers={"Origin": f"http://{stack.browser_host}"},
    )

    assert_branded_error_page(response, 413, "That was too much to send")
    request_id = response.headers["X-Request-ID"]
    assert " upstream=- " in stack.nginx.access_log.wait_for_line(f"rid={request_id}")
    assert not stack.gunicorn_saw(request_id)
    assert stack.signups(email) == []


def test_with_gunicorn_stopped_nginx_answers_a_branded_502_and_serves_static(
    serving_stack,
):
    stack = serving_stack
    css_path = "/static/admin/css/base.css"
    try:
        returncode = stack.gunicorn.stop()
        assert returncode == 0  # SIGTERM is gunicorn's graceful shutdown

        page = stack.get("/")
        post = stack.post("/", data={"name": "Ada", "email": unique_email()})
        css = stack.get(css_path)
    finally:
        stack.restart_gunicorn()

    assert_branded_error_page(page, 502, "Back in a moment")
    assert_branded_error_page(post, 502, "Back in a moment")
    assert css.status_code == 200
    assert css.content == (stack.static_root / "admin/css/base.css").read_bytes()
    # And the site is back once gunicorn is.
    email = unique_email()
    response = sign_up(stack, "Grace Hopper", email)
    assert response.status_code == 302, response.text[:500]
    assert stack.signups(email) == [("Grace Hopper", email)]
