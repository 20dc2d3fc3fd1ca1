"""
Sign-ups per day for the admin's sign-up list: a small bar chart drawn on the
server as SVG (no script, no external library, no inline styles).
"""

from datetime import timedelta
from types import SimpleNamespace

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import RefusalTally

DAYS = 30
# SVG user units; the stylesheet scales the picture to the page's width.
WIDTH = 600
HEIGHT = 140
TOP = 18  # room for the scale's label above the tallest bar
BASELINE = HEIGHT - 22  # the axis, with room for the dates below it
LEFT = 34  # room for the scale's labels
BAR_SHARE = 0.72  # of each day's slot; the rest is the gap between bars
ZERO_HEIGHT = 1.5  # a day without sign-ups is a sliver on the axis, still there


def daily_counts(queryset, *, days=DAYS, today=None):
    """[(date, count)] for each of the DAYS days up to TODAY, zeros included."""
    today = today or timezone.localdate()
    shown = [today - timedelta(days=days - 1 - offset) for offset in range(days)]
    # COUNT(*) lets PostgreSQL answer from the index on signed_up_at alone.
    rows = (
        queryset.order_by()  # the model's ordering would join the GROUP BY
        .on_days(shown[0], today)
        .values_list(TruncDate("signed_up_at"))
        .annotate(count=Count("*"))
    )
    counts = dict(rows)
    return [(day, counts.get(day, 0)) for day in shown]


def refused_counts(first, last):
    """{date: sign-ups refused as automated} from day FIRST to day LAST."""
    rows = (
        RefusalTally.objects.filter(day__range=(first, last))
        .order_by()
        .values_list("day")
        .annotate(total=Sum("count"))
    )
    return dict(rows)


def nice_ceiling(value):
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least VALUE."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def scale_label(value):
    """VALUE, a nice_ceiling(), in the four characters there is room for."""
    if value >= 1_000_000:
        return f"{value // 1_000_000}M"
    return f"{value // 1000}k" if value >= 10_000 else str(value)


def signup_chart(queryset, *, days=DAYS, today=None):
    """Everything the template needs to draw the chart of QUERYSET; the last
    bar is today's."""
    series = daily_counts(queryset, days=days, today=today)
    refused = refused_counts(series[0][0], series[-1][0])
    total = sum(count for _day, count in series)
    peak_day, peak = max(series, key=lambda item: (item[1], item[0]))
    scale = nice_ceiling(max(peak, 1))
    slot = (WIDTH - LEFT) / days
    bar_width = round(slot * BAR_SHARE, 2)

    bars = []
    for index, (day, count) in enumerate(series):
        height = (BASELINE - TOP) * count / scale if count else ZERO_HEIGHT
        signups = ngettext("%(count)d sign-up", "%(count)d sign-ups", count)
        label = _("%(signups)s on %(day)s") % {
            "signups": signups % {"count": count},
            "day": date_format(day, "D j M Y"),
        }
        x = round(LEFT + index * slot + slot * (1 - BAR_SHARE) / 2, 2)
        bars.append(
            SimpleNamespace(
                day=day,
                count=count,
                refused=refused.get(day, 0),
                x=x,
                y=round(BASELINE - height, 2),
                height=round(height, 2),
                label=label,  # the bar's tooltip
            )
        )

    # Dates under the first, middle and last bars; the last one ends at its
    # bar's right edge, so it is not cut off at the edge of the picture.
    ticks = [
        {
            "x": round(bar.x + bar_width * share, 2),
            "text": date_format(bar.day, "j M"),
            "anchor": anchor,
        }
        for bar, share, anchor in [
            (bars[0], 0.5, "middle"),
            (bars[days // 2], 0.5, "middle"),
            (bars[-1], 1, "end"),
        ]
    ]

    summary = ngettext(
        "%(total)d sign-up in the last %(days)d days",
        "%(total)d sign-ups in the last %(days)d days",
        total,
    ) % {"total": total, "days": days}
    if peak:
        summary += "; " + _("busiest day %(day)s with %(count)d") % {
            "day": date_format(peak_day, "j M"),
            "count": peak,
        }
    summary += "; " + _("today %(count)d.") % {"count": series[-1][1]}
    # Kept off the list by accounts.bots; the bars are stored sign-ups only.
    if refused_total := sum(refused.values()):
        summary += " " + _("%(total)d refused as automated (today %(today)d).") % {
            "total": refused_total,
            "today": refused.get(series[-1][0], 0),
        }

    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "top": TOP,
        "baseline": BASELINE,
        "bars": bars,
        "bar_width": bar_width,
        "ticks": ticks,
        "total": total,
        "peak": peak,
        "scale": scale,
        "scale_label": scale_label(scale),
        "summary": summary,
    }
