from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Min
from django.db.models.constants import LOOKUP_SEP
from django.db.models.functions import Now
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from accounts.admin_chart import signup_chart
from accounts.export import csv_chunks
from accounts.models import (
    ConsentWording,
    OutgoingMail,
    Signup,
    SignupQuerySet,
    start_of_day,
)


def period_bounds(moment, kind):
    """The starts of the year, month or day (KIND) that MOMENT falls in and of
    the next one, in the current time zone, as QuerySet.datetimes() truncates."""
    first = timezone.localtime(moment).date()
    if kind == "year":
        first = first.replace(month=1, day=1)
        after = first.replace(year=first.year + 1)
    elif kind == "month":
        first = first.replace(day=1)
        after = (first + timedelta(days=31)).replace(day=1)
    else:
        after = first + timedelta(days=1)
    return [start_of_day(first), start_of_day(after)]


class ChangeListQuerySet(SignupQuerySet):
    """The date hierarchy's periods found by one index lookup each, instead
    of QuerySet.datetimes(), which truncates the date of every matching row."""

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        if kind not in ("year", "month", "day") or tzinfo is not None:
            return super().datetimes(field_name, kind, order, tzinfo)
        periods = []
        later = self
        while (earliest := later.aggregate(first=Min(field_name))["first"]) is not None:
            start, after = period_bounds(earliest, kind)
            periods.append(start)
            later = self.filter(**{f"{field_name}__gte": after})
        return periods if order == "ASC" else periods[::-1]


# From this many rows on, the unfiltered list shows PostgreSQL's estimate of
# the table's size: an exact count reads every row.
ESTIMATE_FROM = 100_000
# The planner's estimate: rows per page at the last (auto)ANALYZE times the
# pages now, so it follows growth in between; NULL if never analysed.
ESTIMATE_SQL = """
    SELECT CASE WHEN c.reltuples < 0 OR c.relpages = 0 THEN NULL
    ELSE (c.reltuples / c.relpages
          * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint
    END
    FROM pg_class c WHERE c.oid = %s::regclass
"""


def estimated_rows(queryset):
    """PostgreSQL's estimate of the rows of QUERYSET's table, or None."""
    connection = connections[queryset.db]
    with connection.cursor() as cursor:
        cursor.execute(
            ESTIMATE_SQL, [connection.ops.quote_name(queryset.model._meta.db_table)]
        )
        row = cursor.fetchone()
    return row[0] if row else None


class FirstPagePaginator(Paginator):
    """Fetches the first page before counting, so a result that fits on one
    page costs one query; on the first page only (may_estimate), a large
    unfiltered table is estimated, not counted, and the templates say "about".
    """

    def __init__(self, *args, may_estimate=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.first_page_rows = None
        self.may_estimate = may_estimate
        self.count_is_estimate = False

    @cached_property
    def count(self):
        rows = list(self.object_list[: self.per_page + 1])
        self.first_page_rows = rows[: self.per_page]
        if len(rows) <= self.per_page:
            return len(rows)
        if self.may_estimate and not self.object_list.query.has_filters():
            estimate = estimated_rows(self.object_list)
            if estimate is not None and estimate >= ESTIMATE_FROM:
                self.count_is_estimate = True
                return estimate
        return super().count

    def page(self, number):
        number = self.validate_number(number)
        if number == 1 and self.first_page_rows is not None:
            return self._get_page(self.first_page_rows, number, self)
        return super().page(number)


# Lookups whose value only PostgreSQL checks, as the query runs: a malformed
# pattern or an unsplit range would be a 500. The list's own filters use none.
LOOKUPS_CHECKED_TOO_LATE = frozenset({"regex", "iregex", "range"})


class SignupChangeList(ChangeList):
    def get_filters_params(self, params=None):
        """The URL's filters; one PostgreSQL would refuse when the query runs
        (NUL in a value, or a lookup above) is the admin's invalid lookup
        instead, answered with its redirect to ?e=1, not a 500."""
        lookup_params = super().get_filters_params(params)
        for key, values in lookup_params.items():
            if key.rsplit(LOOKUP_SEP, 1)[-1] in LOOKUPS_CHECKED_TOO_LATE or any(
                "\x00" in value for value in values
            ):
                raise IncorrectLookupParameters(f"{key}: not a valid filter")
        return lookup_params

    def get_results(self, request):
        super().get_results(request)
        # A single page is shown from the rows the paginator already has.
        rows = getattr(self.paginator, "first_page_rows", None)
        if not self.multi_page and rows is not None:
            self.result_list = rows
        if not self.queryset.query.has_filters():
            # The whole table: no "N results (Show all)", and no second count.
            self.full_result_count = self.result_count

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.query:
            # No date drill-down while searching: finding the first and last
            # match's dates walks the whole index, seconds on a large table.
            self.date_hierarchy = None


def mail_notices():
    """(level, HTML) lines on the sign-up list about mail: that none is sent
    without a mail server, and how many sign-ups wait for confirmation."""
    if not settings.EMAIL_CONFIGURED:
        return [
            (
                "warning",
                gettext("No mail is configured: nothing is sent; see docs/mail.md"),
            )
        ]
    if not settings.SIGNUP_DOUBLE_OPT_IN:
        return []
    # The partial index on waiting sign-ups makes this count cheap.
    waiting = Signup.objects.filter(status=Signup.Status.PENDING).count()
    text = ngettext(
        "Double opt-in is on: {count} sign-up is waiting for confirmation.",
        "Double opt-in is on: {count} sign-ups are waiting for confirmation.",
        waiting,
    )
    url = reverse("admin:accounts_signup_changelist")
    return [
        (
            "info",
            format_html(
                '<a href="{}?status__exact={}">{}</a>',
                url,
                Signup.Status.PENDING,
                text.format(count=f"{waiting:,}"),
            ),
        )
    ]


@admin.register(Signup)
class SignupAdmin(admin.ModelAdmin):
    list_display = ("name", "email", "signed_up_at", "status", "confirmed_at")
    list_filter = ("status", "signed_up_at")
    search_fields = ("name", "email")
    date_hierarchy = "signed_up_at"
    fields = ("name", "email", "signed_up_at", "status", "confirmed_at", "consent")
    readonly_fields = ("signed_up_at", "status", "confirmed_at", "consent")
    actions = ("export_csv",)
    # "(N total)" by the search box would count the whole table every time.
    show_full_result_count = False

    def get_changelist(self, request, **kwargs):
        return SignupChangeList

    def get_paginator(self, request, *args, **kwargs):
        first_page = request.GET.get(PAGE_VAR, "1") == "1"
        return FirstPagePaginator(*args, may_estimate=first_page, **kwargs)

    def action_checkbox(self, obj):
        """Django's checkbox HTML without three widget templates per row."""
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select"'
            ' aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            format_html(gettext("Select this object for an action - {}"), str(obj)),
        )

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return ChangeListQuerySet(self.model, query=queryset.query, using=queryset.db)

    def changelist_view(self, request, extra_context=None):
        # Callables: the chart and the count are made only with the page,
        # not for an action.
        extra_context = {
            **(extra_context or {}),
            "signup_chart": lambda: signup_chart(self.get_queryset(request)),
            "mail_notices": mail_notices,
        }
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("consent"))
    def consent(self, signup):
        """The version of the form's wording the person signed up under, and
        what it said."""
        if not signup.consent_version:
            return gettext("not recorded (signed up before consent was recorded)")
        wording = ConsentWording.objects.filter(pk=signup.consent_version).first()
        if wording is None:
            return format_html(
                "{} ({})",
                signup.consent_version,
                gettext("its wording is not on record"),
            )
        return format_html(
            "{version}: {text}<br>{privacy_label}: {privacy_url}<br>{asked}",
            version=wording.version,
            text=wording.text or gettext("(no consent sentence)"),
            privacy_label=gettext("privacy page"),
            privacy_url=wording.privacy_url or gettext("none"),
            asked=gettext("asked with an unticked checkbox")
            if wording.checkbox
            else gettext("no checkbox"),
        )

    def get_deleted_objects(self, objs, request):
        """Django's list of what a delete takes with it; the sign-ups' mail
        goes with them (on_delete=CASCADE) even though no one may delete mail
        records on their own."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(
            objs, request
        )
        perms_needed.discard(OutgoingMail._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    @admin.action(description=_("Export selected sign-ups as CSV"))
    def export_csv(self, request, queryset):
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(
            csv_chunks(queryset), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="signups-{stamp}.csv"'
        return response


class ReadOnlyAdmin(admin.ModelAdmin):
    """A list and pages to look at: records the site keeps, which nobody
    edits by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OutgoingMail)
class OutgoingMailAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "attempts",
        "due_at",
        "sent_at",
        "last_error",
        "signup_link",
    )
    list_filter = ("status", "kind")
    list_select_related = ("signup",)
    search_fields = ("signup__email",)
    actions = ("queue_again",)

    @admin.display(description=_("sign-up"), ordering="signup")
    def signup_link(self, mail):
        url = reverse("admin:accounts_signup_change", args=[mail.signup_id])
        return format_html('<a href="{}">{}</a>', url, mail.signup.email)

    def has_queue_again_permission(self, request):
        return request.user.has_perm("accounts.change_outgoingmail")

    @admin.action(
        description=_("Queue the selected failed mail again"),
        permissions=["queue_again"],
    )
    def queue_again(self, request, queryset):
        """Failed mail back in the queue, due now: for once the cause (a
        refused sender, a full mailbox) is fixed. Other mail is left alone."""
        selected = queryset.count()
        queued = queryset.filter(status=OutgoingMail.Status.FAILED).update(
            status=OutgoingMail.Status.QUEUED, due_at=Now()
        )
        message = ngettext(
            "{count} mail queued again.", "{count} mails queued again.", queued
        ).format(count=queued)
        if skipped := selected - queued:
            message += " " + ngettext(
                "{count} had not failed and is unchanged.",
                "{count} had not failed and are unchanged.",
                skipped,
            ).format(count=skipped)
        self.message_user(request, message)


@admin.register(ConsentWording)
class ConsentWordingAdmin(ReadOnlyAdmin):
    list_display = ("version", "text", "privacy_url", "checkbox", "first_used_at")
