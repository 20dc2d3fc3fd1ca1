"""
Sign-ups per day for the admin's sign-up list: a small bar chart, drawn on the
server as SVG (no script, no external library, no inline styles), so the owner
sees the trend at a glance.

One query groups the last DAYS days by date in the site's time zone; the range
condition is on the indexed column itself, so it reads only those days.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

DAYS = 30
# SVG user units; the stylesheet scales the picture to the page's width.
WIDTH = 600
HEIGHT = 140
TOP = 18  # room for the scale's label above the tallest bar
BASELINE = HEIGHT - 22  # the axis, with room for the dates below it
LEFT = 34  # room for the scale's labels
BAR_SHARE = 0.72  # of each day's slot; the rest is the gap between bars
ZERO_HEIGHT = 1.5  # a day without sign-ups is a sliver on the axis, still there


@dataclass(frozen=True)
class Bar:
    day: date
    count: int
    x: float
    y: float
    height: float
    label: str  # "3 sign-ups on Mon 12 May 2025", the bar's tooltip


def daily_counts(queryset, *, days=DAYS, today=None):
    """[(date, count)] for each of the DAYS days up to TODAY, zeros included."""
    today = today or timezone.localdate()
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, time.min))
    end = timezone.make_aware(datetime.combine(today + timedelta(days=1), time.min))
    rows = (
        queryset.order_by()  # the model's ordering would join the GROUP BY
        .filter(signed_up_at__gte=start, signed_up_at__lt=end)
        .annotate(day=TruncDate("signed_up_at"))
        .values("day")
        # COUNT(*), not COUNT(id): counting entries lets PostgreSQL answer
        # from the index over signed_up_at alone (an index-only scan).
        .annotate(count=Count("*"))
        .values_list("day", "count")
    )
    counts = dict(rows)
    shown = [first + timedelta(days=offset) for offset in range(days)]
    return [(day, counts.get(day, 0)) for day in shown]


def nice_ceiling(value):
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least VALUE."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def signup_chart(queryset, *, days=DAYS, today=None):
    """Everything the template needs to draw the chart of QUERYSET; the last
    bar is today's."""
    series = daily_counts(queryset, days=days, today=today)
    total = sum(count for _day, count in series)
    peak_day, peak = max(series, key=lambda item: (item[1], item[0]))
    scale = nice_ceiling(max(peak, 1))
    slot = (WIDTH - LEFT) / days
    bar_width = slot * BAR_SHARE

    bars = []
    for index, (day, count) in enumerate(series):
        height = (BASELINE - TOP) * count / scale if count else ZERO_HEIGHT
        noun = ngettext("%(count)d sign-up", "%(count)d sign-ups", count) % {
            "count": count
        }
        bars.append(
            Bar(
                day=day,
                count=count,
                x=round(LEFT + index * slot + (slot - bar_width) / 2, 2),
                y=round(BASELINE - height, 2),
                height=round(height, 2),
                label=_("%(signups)s on %(day)s")
                % {"signups": noun, "day": date_format(day, "D j M Y")},
            )
        )

    # Dates under the first, middle and last bars; the last one ends at its
    # bar's right edge, so it is not cut off at the edge of the picture.
    ticks = [
        {
            "x": round(bar.x + round(bar_width, 2) * share, 2),
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

    return {
        "bars": bars,
        "bar_width": round(bar_width, 2),
        "ticks": ticks,
        "total": total,
        "peak": peak,
        "scale": scale,
        "summary": summary,
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "top": TOP,
        "baseline": BASELINE,
    }
