"""The chart of sign-ups per day on the admin's sign-up list."""

import re
from datetime import UTC, date, datetime, timedelta
from unittest import mock

import pytest
from django.utils import timezone

from accounts.admin_chart import daily_counts, nice_ceiling, scale_label, signup_chart
from accounts.models import RefusalTally, Signup

CHANGELIST = "/admin/accounts/signup/"
TODAY = date(2025, 6, 30)


def add(when, count=1):
    for index in range(count):
        signup = Signup.objects.create(
            name="Someone", email=f"{when.isoformat()}-{index}@example.com"
        )
        Signup.objects.filter(pk=signup.pk).update(signed_up_at=when)


def moment(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (1, 1), (2, 2), (3, 5), (5, 5), (6, 10), (11, 20), (57, 100)],
)
def test_the_scale_ends_on_a_round_number(value, ceiling):
    assert nice_ceiling(value) == ceiling


@pytest.mark.django_db
def test_counts_each_day_whole_and_fills_empty_days_with_zero():
    add(moment("2025-06-30T23:59:59"), 2)
    add(moment("2025-06-30T00:00:00"))
    add(moment("2025-06-29T23:59:59"))
    add(moment("2025-06-01T00:00:00"), 4)  # the first of the 30 days
    add(moment("2025-05-31T23:59:59"), 7)  # a day too early
    add(moment("2025-07-01T00:00:00"), 9)  # tomorrow

    series = daily_counts(Signup.objects.all(), days=30, today=TODAY)

    assert len(series) == 30
    assert series[0] == (date(2025, 6, 1), 4)
    assert series[-2:] == [(date(2025, 6, 29), 1), (date(2025, 6, 30), 3)]
    assert sum(count for _, count in series) == 8


@pytest.mark.django_db
def test_days_follow_the_site_time_zone(settings):
    settings.TIME_ZONE = "America/New_York"  # UTC-4 in June
    add(moment("2025-06-30T03:00:00"))  # 29 June, 23:00 in New York

    with timezone.override("America/New_York"):
        series = daily_counts(Signup.objects.all(), days=2, today=TODAY)

    assert series == [(date(2025, 6, 29), 1), (date(2025, 6, 30), 0)]


@pytest.mark.parametrize(
    ("scale", "label"),
    [(1, "1"), (5000, "5000"), (10_000, "10k"), (500_000, "500k"), (2_000_000, "2M")],
)
def test_the_scale_label_fits_left_of_the_axis(scale, label):
    # Five digits at the chart's font size would run past the picture's edge.
    assert scale_label(scale) == label


@pytest.mark.django_db
def test_bars_are_scaled_to_the_busiest_day_and_labelled():
    add(moment("2025-06-30T10:00:00"), 3)
    add(moment("2025-06-20T10:00:00"), 6)

    chart = signup_chart(Signup.objects.all(), days=30, today=TODAY)

    assert chart["total"] == 9
    assert chart["peak"] == 6
    assert chart["scale"] == 10
    assert chart["scale_label"] == "10"
    bars = {bar.day: bar for bar in chart["bars"]}
    assert bars[date(2025, 6, 20)].height == pytest.approx(
        (chart["baseline"] - chart["top"]) * 0.6, abs=0.01
    )
    assert chart["bars"][-1].day == TODAY
    assert bars[date(2025, 6, 30)].label == "3 sign-ups on Mon 30 Jun 2025"
    # A day without sign-ups is a sliver on the axis, so it is still there.
    assert 0 < bars[date(2025, 6, 1)].height < 2
    assert bars[date(2025, 6, 1)].y + bars[date(2025, 6, 1)].height == pytest.approx(
        chart["baseline"]
    )
    assert bars[date(2025, 6, 1)].label == "0 sign-ups on Sun 1 Jun 2025"
    assert chart["summary"] == (
        "9 sign-ups in the last 30 days; busiest day 20 Jun with 6; today 3."
    )
    assert [tick["text"] for tick in chart["ticks"]] == ["1 Jun", "16 Jun", "30 Jun"]
    # Every bar inside the picture.
    for bar in chart["bars"]:
        assert chart["left"] <= bar.x
        assert bar.x + chart["bar_width"] <= chart["width"]
        assert chart["top"] <= bar.y <= chart["baseline"]


@pytest.mark.django_db
def test_an_empty_month_is_drawn_without_dividing_by_zero():
    chart = signup_chart(Signup.objects.all(), days=30, today=TODAY)

    assert chart["total"] == 0
    assert chart["summary"] == "0 sign-ups in the last 30 days; today 0."
    assert all(bar.count == 0 and bar.height > 0 for bar in chart["bars"])


@pytest.mark.django_db
def test_the_chart_is_two_small_queries(django_assert_num_queries):
    """One for the sign-ups, one for the refusals' table of a row per day."""
    add(timezone.now(), 2)

    with django_assert_num_queries(2):
        signup_chart(Signup.objects.all())


@pytest.mark.django_db
def test_the_sign_up_list_shows_the_chart_as_svg_without_script_or_inline_style(
    admin_client,
):
    add(timezone.now() - timedelta(days=1), 2)
    add(timezone.now())

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    html = response.content.decode()
    figure = re.search(r'<figure class="signup-chart".*?</figure>', html, re.S)
    assert figure, "the chart is on the page"
    chart = figure.group(0)
    assert '<svg class="signup-chart__plot"' in chart
    assert chart.count("<rect ") == 30
    # Today's bar (the last) stands out, and so do the 28 days without any.
    classes = re.findall(r'<rect class="([^"]*)"', chart)
    assert ["--today" in bar for bar in classes] == [False] * 29 + [True]
    assert sum("--zero" in bar for bar in classes) == 28
    assert "3 sign-ups in the last 30 days" in chart
    assert re.search(r'class="signup-chart__scale"[^>]*>2</text>', chart)
    assert "style=" not in chart
    assert "<script" not in chart
    assert "/static/accounts/admin-chart" in html
    # Numbers as SVG wants them, whatever the language: no decimal commas.
    for value in re.findall(r' (?:x|y|width|height)="([^"]+)"', chart):
        assert re.fullmatch(r"-?\d+(\.\d+)?", value), value


@pytest.mark.django_db
def test_the_chart_is_not_computed_for_an_action(admin_client):
    add(timezone.now())
    ids = [str(pk) for pk in Signup.objects.values_list("pk", flat=True)]

    with mock.patch("accounts.admin.signup_chart") as chart:
        response = admin_client.post(
            CHANGELIST,
            {"action": "export_csv", "_selected_action": ids, "index": "0"},
        )
        b"".join(response.streaming_content)

    assert response.status_code == 200
    chart.assert_not_called()


@pytest.mark.django_db
def test_a_popup_list_has_no_chart(admin_client):
    response = admin_client.get(CHANGELIST + "?_popup=1&_to_field=id")

    assert response.status_code == 200
    assert "signup-chart" not in response.content.decode()


@pytest.mark.django_db
def test_refused_sign_ups_are_summed_per_day_beside_the_stored_ones():
    add(moment("2025-06-30T10:00:00"), 2)
    Reason = RefusalTally.Reason
    for day, reason, count in [
        (TODAY, Reason.TRAP, 5),
        (TODAY, Reason.TOO_FAST, 1),
        (date(2025, 6, 29), Reason.FORGED_TOKEN, 3),
        (date(2025, 5, 31), Reason.TRAP, 100),  # before the 30 days
    ]:
        RefusalTally.objects.create(day=day, reason=reason, count=count)

    chart = signup_chart(Signup.objects.all(), days=30, today=TODAY)

    by_day = {bar.day: (bar.count, bar.refused) for bar in chart["bars"]}
    assert by_day[TODAY] == (2, 6)
    assert by_day[date(2025, 6, 29)] == (0, 3)
    assert chart["peak"] == 2
    assert chart["summary"].endswith("9 refused as automated (today 6).")
