"""What a browser does that the tests and the benchmark both need: read a
form's CSRF token and the sign-up form's token, and log in to the admin
through nginx."""

import re

import requests

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
SIGNUP_TOKEN_FIELD = re.compile(r'name="signup_token" value="([^"]+)"')


def form_token(html):
    """The CSRF token in a page's form."""
    return CSRF_FIELD.search(html).group(1)


def signup_token(html):
    """The sign-up form's token (accounts.bots) in a page, or "" if it has
    none (a tree from before it had one)."""
    match = SIGNUP_TOKEN_FIELD.search(html)
    return match.group(1) if match else ""


def admin_login(base_url, host, username, password, *, timeout=60):
    """A requests.Session logged in to the admin at BASE_URL as a browser at
    http://HOST: it sends that Host with every request."""
    session = requests.Session()
    session.headers["Host"] = host
    login = session.get(f"{base_url}/admin/login/", timeout=timeout)
    response = session.post(
        f"{base_url}/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": form_token(login.text),
            "username": username,
            "password": password,
            "next": "/admin/",
        },
        headers={"Origin": f"http://{host}"},
        allow_redirects=False,
        timeout=timeout,
    )
    if response.status_code != 302 or "sessionid" not in session.cookies:
        raise RuntimeError(
            f"admin login failed: {response.status_code}\n{response.text[:500]}"
        )
    return session
