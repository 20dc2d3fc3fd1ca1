"""
The owner in a real browser: logs into the admin, sees the chart of sign-ups
per day, searches, filters, exports the filtered sign-ups as CSV and opens
the downloaded file.
"""

import csv
import re

from tests.browser.conftest import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    DESKTOP,
    playwright_expect,
    query,
)
from tests.support.export import HEADER

expect = playwright_expect()

PAST_7_DAYS = """
    signed_up_at >= (date_trunc('day', now() AT TIME ZONE 'UTC')
                     - interval '7 days') AT TIME ZONE 'UTC'
"""
FORMULA_NAME = '=HYPERLINK("http://example.com","Click")'


def test_owner_logs_in_searches_filters_and_exports_csv(
    site, open_context, screenshot, tmp_path
):
    page = open_context(viewport=DESKTOP).new_page()

    # Log in: the admin sends a stranger to its login page first.
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))
    page.get_by_label("Username").fill(ADMIN_USERNAME)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    page.locator('#content-main a[href="/admin/accounts/signup/"]').first.click()
    expect(page).to_have_url(f"{site.base_url}/admin/accounts/signup/")

    # The chart: a bar for each of the last 30 days, and the numbers in words.
    (last_30_days,) = query(
        site,
        "SELECT count(*) FROM accounts_signup WHERE signed_up_at >= "
        "(date_trunc('day', now() AT TIME ZONE 'UTC') - interval '29 days')"
        " AT TIME ZONE 'UTC'",
    )[0]
    chart = page.locator("#signup-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("figcaption")).to_contain_text(
        f"{last_30_days} sign-ups in the last 30 days"
    )
    expect(chart.get_by_role("img")).to_have_accessible_name(
        re.compile(r"^Sign-ups per day")
    )
    expect(chart.locator("rect")).to_have_count(30)
    # Room for the list: the navigation sidebar folds away, as it would for
    # a person on a laptop (the admin remembers that in the browser).
    page.get_by_role("button", name="Toggle navigation").click()
    expect(page.locator("#nav-sidebar")).to_be_hidden()
    page.evaluate("window.scrollTo(0, 0)")  # clicking it scrolled the page
    screenshot(page, "admin-signups")

    # Search by an address: that sign-up and no other.
    name, email = site.seeded[-1][:2]
    search = page.locator("#changelist-search")
    search.get_by_role("textbox", name="Search").fill(email)
    search.get_by_role("button", name="Search").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list tbody")).to_contain_text(name)

    # A sign-up whose name a spreadsheet would run as a formula.
    query(
        site,
        "INSERT INTO accounts_signup (name, email) VALUES (%s, %s) RETURNING id",
        (FORMULA_NAME, "formula@example.com"),
    )

    # Filter: the past 7 days (the search is cleared first).
    page.goto("/admin/accounts/signup/")
    page.locator("#changelist-filter").get_by_role("link", name="Past 7 days").click()
    expect(page).to_have_url(re.compile(r"signed_up_at__gte="))
    expected = {
        row[0]
        for row in query(site, f"SELECT email FROM accounts_signup WHERE {PAST_7_DAYS}")
    }
    assert 0 < len(expected) <= 100  # one page
    expect(page.locator("#result_list tbody tr")).to_have_count(len(expected))

    # Export what the filter shows: select the page, run the action.
    page.locator("#action-toggle").check()
    page.get_by_label("Action:").select_option(label="Export selected sign-ups as CSV")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Go").click()
    download = download_info.value
    assert re.fullmatch(r"signups-\d{8}-\d{6}\.csv", download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)

    # Open the downloaded file: the header, every filtered row, and formulas
    # turned into plain text.
    with saved.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == HEADER
    assert {row[1] for row in rows[1:]} == expected
    assert len(rows) - 1 == len(expected)
    formula_rows = [row for row in rows[1:] if row[1] == "formula@example.com"]
    assert formula_rows[0][0] == "'" + FORMULA_NAME
