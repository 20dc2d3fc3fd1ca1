"""What the form tells people about their consent, and its version: each
sign-up records the version it was given under, and ConsentWording keeps
what each version said, so the owner can show what a person agreed to."""

import hashlib
import json
from functools import cache

from django.conf import settings

from accounts.models import ConsentWording


@cache
def wording():
    """The form's consent wording as configured: a ConsentWording, unsaved."""
    parts = [
        settings.SIGNUP_CONSENT_TEXT,
        settings.SIGNUP_PRIVACY_URL,
        settings.SIGNUP_CONSENT_CHECKBOX,
    ]
    # The same wording gets the same version on every host and every start.
    digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
    text, privacy_url, checkbox = parts
    return ConsentWording(
        version=digest[:12], text=text, privacy_url=privacy_url, checkbox=checkbox
    )


def record():
    """Store the current wording if this version is new; return it."""
    current = wording()
    stored, _created = ConsentWording.objects.get_or_create(
        version=current.version,
        defaults={
            "text": current.text,
            "privacy_url": current.privacy_url,
            "checkbox": current.checkbox,
        },
    )
    return stored
