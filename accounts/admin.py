from django.contrib import admin
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.admin_chart import signup_chart
from accounts.export import csv_rows
from accounts.models import Signup


@admin.register(Signup)
class SignupAdmin(admin.ModelAdmin):
    list_display = ("name", "email", "signed_up_at")
    list_filter = ("signed_up_at",)
    search_fields = ("name", "email")
    date_hierarchy = "signed_up_at"
    readonly_fields = ("signed_up_at",)
    actions = ("export_csv",)

    def changelist_view(self, request, extra_context=None):
        # The chart of sign-ups per day above the list. A callable: the
        # template calls it only when the page is drawn, not for an action.
        extra_context = {
            **(extra_context or {}),
            "signup_chart": lambda: signup_chart(self.get_queryset(request)),
        }
        return super().changelist_view(request, extra_context)

    @admin.action(description=_("Export selected sign-ups as CSV"))
    def export_csv(self, request, queryset):
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(
            csv_rows(queryset), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="signups-{stamp}.csv"'
        return response
