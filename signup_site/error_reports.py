"""
What Django's error reports (the debug page, error mails) leave out.

Django masks a setting or a request.META entry when its name looks secret
(API, AUTH, TOKEN, KEY, SECRET, PASS, SIGNATURE, HTTP_COOKIE). A database URL
carries its password inside the value under a name that does not look secret,
and under runserver request.META holds the whole environment.
"""

import re

from django.views.debug import SafeExceptionReporterFilter


class SecretMaskingFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        SafeExceptionReporterFilter.hidden_settings.pattern + "|DATABASE_URL|DSN",
        flags=re.IGNORECASE,
    )
