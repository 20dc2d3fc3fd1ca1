"""The mail the site sends and the signed links in it: a confirmation link
(valid for SIGNUP_CONFIRM_DAYS) and an unsubscribe link (valid as long as the
sign-up exists). Both carry only the sign-up's id, signed with the secret key
(and accepted under SECRET_KEY_FALLBACKS after a rotation); neither link nor
mail carries anything the visitor typed but the address it goes to."""

from datetime import timedelta
from email.utils import parseaddr
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.urls import reverse

CONFIRM_SALT = "accounts.mail.confirm"
UNSUBSCRIBE_SALT = "accounts.mail.unsubscribe"


class BadLink(Exception):
    """A link's token is not one this site signed (or was cut short)."""


class ExpiredLink(Exception):
    """A confirmation link older than SIGNUP_CONFIRM_DAYS."""


def confirm_token(signup_id):
    return signing.dumps(signup_id, salt=CONFIRM_SALT)


def unsubscribe_token(signup_id):
    return signing.Signer(salt=UNSUBSCRIBE_SALT).sign_object(signup_id)


def confirmed_signup_id(token):
    """The sign-up id a confirmation TOKEN was issued for."""
    try:
        signup_id = signing.loads(
            token,
            salt=CONFIRM_SALT,
            max_age=timedelta(days=settings.SIGNUP_CONFIRM_DAYS),
        )
    except signing.SignatureExpired as exc:
        raise ExpiredLink from exc
    except signing.BadSignature as exc:
        raise BadLink from exc
    return _signup_id(signup_id)


def unsubscribing_signup_id(token):
    """The sign-up id an unsubscribe TOKEN was issued for."""
    try:
        signup_id = signing.Signer(salt=UNSUBSCRIBE_SALT).unsign_object(token)
    except signing.BadSignature as exc:
        raise BadLink from exc
    return _signup_id(signup_id)


def _signup_id(value):
    # A valid signature over something else would be a bug, not a visitor's.
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadLink
    return value


def absolute(view, token):
    return settings.SIGNUP_PUBLIC_URL + reverse(view, args=[token])


def site_name():
    return urlsplit(settings.SIGNUP_PUBLIC_URL).hostname


def message_id(mail_id, domain):
    """The same for every sending of outbox row MAIL_ID, and unlike any other
    site's (it is keyed with the secret key)."""
    mark = signing.Signer(salt="accounts.mail.message-id").signature(str(mail_id))
    return f"<{mail_id}.{mark[:16]}@{domain}>"


def confirmation_mail(mail_id, signup_id, address):
    """The mail asking ADDRESS to confirm sign-up SIGNUP_ID, as outbox row
    MAIL_ID: sent again after a crash, it carries the same Message-ID, so a
    mail client can tell it is the same mail."""
    unsubscribe_url = absolute("accounts:unsubscribe", unsubscribe_token(signup_id))
    context = {
        "site": site_name(),
        "confirm_url": absolute("accounts:confirm", confirm_token(signup_id)),
        "unsubscribe_url": unsubscribe_url,
        "days": settings.SIGNUP_CONFIRM_DAYS,
        "purge_days": settings.SIGNUP_PURGE_DAYS,
    }
    sender_domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2]
    return EmailMessage(
        subject=render_to_string("accounts/mail/confirm_subject.txt", context).strip(),
        body=render_to_string("accounts/mail/confirm_body.txt", context),
        to=[address],
        headers={
            # RFC 8058: a mail client may offer a one-click way out, which
            # POSTs "List-Unsubscribe=One-Click" to this address.
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            # RFC 3834: no vacation or out-of-office answers to this.
            "Auto-Submitted": "auto-generated",
            "Message-ID": message_id(mail_id, sender_domain or "localhost"),
        },
    )
