"""The sign-up form's data as a browser sends it: with the form token the
page carried, drawn long enough ago (accounts.bots)."""

import time
from urllib.parse import urlencode

from accounts.bots import TOKEN_FIELD, issue_token


def signed(data, *, age=60, key=None):
    """DATA with the token of a form drawn AGE seconds ago, signed with KEY
    (default: this process's SECRET_KEY)."""
    return {**data, TOKEN_FIELD: issue_token(now=time.time() - age, key=key)}


def signed_body(body, *, age=60, key=None):
    """A urlencoded form body (bytes) with that token added at the end."""
    return body + b"&" + urlencode(signed({}, age=age, key=key)).encode()
