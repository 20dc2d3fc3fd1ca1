"""
The Django and psycopg internals the project leans on are still there: after
an upgrade, a failure here names the section of docs/upgrading.md that says
what to re-check, before the tests of the behaviour fail in ways harder to
read.
"""

import inspect
import io

import psycopg
import pytest
from django.contrib.admin import helpers
from django.contrib.admin import utils as admin_utils
from django.contrib.admin.views.main import ChangeList
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.management.base import OutputWrapper
from django.core.paginator import Paginator
from django.db.backends.postgresql import base as postgresql_base
from django.db.models import QuerySet
from psycopg import errors, waiting

from signup_site import admin_only


def advice(section):
    return (
        f"a library internal the project uses has changed: see "
        f"docs/upgrading.md#{section} for what relies on it and what to re-check"
    )


def parameters(function):
    return list(inspect.signature(function).parameters)


def test_psycopg_waits_as_the_bounded_connection_expects():
    assert parameters(psycopg.Connection.wait) == [
        "self",
        "gen",
        "interval",
        "timeout",
    ], advice("psycopg")
    assert parameters(waiting.wait) == ["gen", "fileno", "interval", "timeout"], advice(
        "psycopg"
    )
    assert issubclass(errors._WaitTimeout, psycopg.OperationalError), advice("psycopg")


def test_djangos_backend_connects_through_its_database_attribute():
    source = inspect.getsource(postgresql_base.DatabaseWrapper.get_new_connection)
    assert "self.Database.connect(" in source, advice("djangos-postgresql-backend")
    for hook in ("is_usable", "ensure_connection", "create_cursor"):
        assert hasattr(postgresql_base.DatabaseWrapper, hook), advice(
            "djangos-postgresql-backend"
        )


def test_the_admin_internals_the_sign_up_list_reuses_are_there():
    source = inspect.getsource(ChangeList.get_results)
    for attribute in ("self.multi_page", "self.result_list", "self.full_result_count"):
        assert attribute in source, advice("djangos-admin")
    assert callable(getattr(Paginator, "_get_page", None)), advice("djangos-admin")
    assert helpers.ACTION_CHECKBOX_NAME == "_selected_action", advice("djangos-admin")
    assert parameters(QuerySet.datetimes) == [
        "self",
        "field_name",
        "kind",
        "order",
        "tzinfo",
    ], advice("djangos-admin")
    source = inspect.getsource(admin_utils.get_deleted_objects)
    assert "perms_needed.add(opts.verbose_name)" in source, advice("djangos-admin")


@pytest.mark.parametrize(
    ("name", "blocks"),
    [
        ("admin/change_list.html", ("extrastyle", "search")),
        ("admin/base.html", ("messages",)),
        ("admin/actions.html", ("actions-counter",)),
    ],
)
def test_the_admin_templates_have_the_blocks_ours_fill(name, blocks):
    from django.template.loader import get_template

    source = get_template(name).template.source
    for block in blocks:
        assert f"{{% block {block} %}}" in source, advice("djangos-admin")


def test_the_admin_only_middleware_still_satisfy_the_admins_checks():
    from django.core import checks

    errors_found = [
        message.id
        for message in checks.run_checks()
        if message.id in ("admin.E408", "admin.E409", "admin.E410")
    ]
    assert errors_found == [], advice("sessions-users-and-messages-for-the-admin-only")
    assert issubclass(admin_only.AdminSessionMiddleware, SessionMiddleware), advice(
        "sessions-users-and-messages-for-the-admin-only"
    )


def test_output_wrapper_keeps_its_stream_where_export_signups_reads_it():
    stream = io.StringIO()
    assert OutputWrapper(stream)._out is stream, advice("management-commands")


def test_manifest_storage_url_takes_what_the_cached_storage_passes():
    from django.contrib.staticfiles.storage import ManifestStaticFilesStorage

    assert parameters(ManifestStaticFilesStorage.url) == ["self", "name", "force"], (
        advice("static-files")
    )
