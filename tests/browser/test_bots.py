"""
The defences against scripts (accounts.bots), seen from Chromium: a person
typing signs up; Chromium's own autofill leaves the trap empty, and a person
faster than the minimum signs up with a second click; the keyboard never
reaches the trap and the accessibility tree does not hold it. The page
fixtures fail any test whose pages violate the Content-Security-Policy.

Each flow prints how long it took from the page's start to the click that
sent the form (run with -s to see them; docs/performance.md has a run's).
"""

import uuid

from tests.browser.conftest import MINIMUM_FILL_SECONDS, playwright_expect, query

expect = playwright_expect()

RESEND = "Please check your details and send the form again."
# A fast typist: about 150 words a minute, 80 ms a key.
KEY_DELAY_MS = 80
# A person's pauses, from the keystroke-level model's fast end: taking in a
# page they already meant to fill in, and one keystroke.
NOTICE_MS = 500
KEY_MS = 120
# What Chromium's autofill fills from: a profile with more than the form asks.
PROFILE = [
    ("NAME_FULL", "Ada Lovelace"),
    ("EMAIL_ADDRESS", None),
    ("COMPANY_NAME", "Analytical Engines Ltd"),
    ("ADDRESS_HOME_STREET_ADDRESS", "12 St James's Square"),
    ("ADDRESS_HOME_CITY", "London"),
    ("ADDRESS_HOME_ZIP", "SW1Y 4JH"),
    ("PHONE_HOME_WHOLE_NUMBER", "+44 20 7946 0000"),
]


def unique_email(label):
    return f"{label}-{uuid.uuid4().hex[:8]}@example.com"


def stored(site, email):
    return query(
        site, "SELECT name, email FROM accounts_signup WHERE email = %s", (email,)
    )


def seconds_on_page(page):
    return page.evaluate("() => performance.now()") / 1000


def report(flow, seconds):
    print(f"\n{flow}: form sent {seconds:.2f} s after the page started loading")


def autofill(page, email):
    """Chromium's address autofill, anchored on the focused name field, as a
    person picking their profile from its menu; returns the fields Chromium
    says it filled (DevTools' Autofill domain)."""
    session = page.context.new_cdp_session(page)
    filled = []
    session.on("Autofill.addressFormFilled", lambda event: filled.append(event))
    session.send("Autofill.enable")
    root = session.send("DOM.getDocument")["root"]["nodeId"]
    node = session.send("DOM.querySelector", {"nodeId": root, "selector": "#id_name"})
    field = session.send("DOM.describeNode", {"nodeId": node["nodeId"]})
    profile = [{"name": name, "value": value or email} for name, value in PROFILE]
    session.send(
        "Autofill.trigger",
        {"fieldId": field["node"]["backendNodeId"], "address": {"fields": profile}},
    )
    page.wait_for_function("() => document.querySelector('#id_email').value !== ''")
    return {f["name"]: f["value"] for event in filled for f in event["filledFields"]}


def test_a_person_typing_at_human_speed_signs_up(site, page):
    email = unique_email("typist")
    page.goto("/")

    page.get_by_label("Name").click()
    page.keyboard.type("Ada Lovelace", delay=KEY_DELAY_MS)
    page.keyboard.press("Tab")
    page.keyboard.type(email, delay=KEY_DELAY_MS)
    sent_after = seconds_on_page(page)
    page.keyboard.press("Enter")

    expect(page).to_have_url(f"{site.base_url}/thanks/")
    assert stored(site, email) == [("Ada Lovelace", email)]
    report("typing at 150 words a minute", sent_after)
    assert sent_after > MINIMUM_FILL_SECONDS


def test_autofill_leaves_the_trap_empty_and_the_fastest_person_signs_up(site, page):
    email = unique_email("autofill")
    page.goto("/")

    # As fast as a person can: see the page, Tab to the name, pick the
    # profile from Chromium's menu (Down, Enter), press Enter to send.
    page.wait_for_timeout(NOTICE_MS)
    page.keyboard.press("Tab")
    page.wait_for_timeout(3 * KEY_MS)
    filled = autofill(page, email)
    page.wait_for_timeout(KEY_MS)
    sent_after = seconds_on_page(page)
    page.keyboard.press("Enter")

    expect(page).to_have_url(f"{site.base_url}/thanks/")
    assert filled["name"] == "Ada Lovelace"
    assert filled["email"] == email
    assert filled.get("leave_empty", "") == ""
    assert stored(site, email) == [("Ada Lovelace", email)]
    report("Chromium autofill, keyboard only", sent_after)
    assert sent_after > MINIMUM_FILL_SECONDS


def test_a_form_sent_faster_than_a_person_comes_back_and_the_next_click_stores(
    site, page
):
    email = unique_email("instant")
    page.goto("/")

    # Autofill and Enter with no pause at all, as a password manager's
    # automatic sending would.
    page.keyboard.press("Tab")
    filled = autofill(page, email)
    sent_after = seconds_on_page(page)
    page.keyboard.press("Enter")

    assert filled.get("leave_empty", "") == ""
    report("autofill and Enter with no pause", sent_after)
    assert sent_after < MINIMUM_FILL_SECONDS
    # Faster than the minimum: the form again, filled in, with one sentence.
    expect(page.get_by_role("alert")).to_have_text(RESEND)
    expect(page.get_by_label("Name")).to_have_value("Ada Lovelace")
    expect(page.get_by_label("Email address")).to_have_value(email)
    expect(page.locator("#id_leave_empty")).to_have_value("")
    assert stored(site, email) == []

    page.wait_for_timeout(NOTICE_MS)
    page.get_by_role("button", name="Go").click()

    expect(page).to_have_url(f"{site.base_url}/thanks/")
    assert stored(site, email) == [("Ada Lovelace", email)]


def test_autofill_with_the_pointer_signs_up_at_the_first_click(site, page):
    email = unique_email("pointer")
    page.goto("/")

    # Point at the name field, pick the profile, point at the button: the
    # keystroke-level model's 1.1 s for each pointing.
    page.wait_for_timeout(NOTICE_MS)
    page.get_by_label("Name").click()
    page.wait_for_timeout(1100)
    filled = autofill(page, email)
    page.wait_for_timeout(1100)
    sent_after = seconds_on_page(page)
    page.get_by_role("button", name="Go").click()

    expect(page).to_have_url(f"{site.base_url}/thanks/")
    assert filled.get("leave_empty", "") == ""
    assert stored(site, email) == [("Ada Lovelace", email)]
    report("Chromium autofill with the pointer", sent_after)


def test_the_keyboard_never_reaches_the_trap(site, page):
    page.goto("/")

    focused = []
    for _ in range(12):  # more than every stop on the page, twice round
        page.keyboard.press("Tab")
        focused.append(page.evaluate("() => document.activeElement.id || ''"))

    assert "id_leave_empty" not in focused
    assert {"id_name", "id_email"} <= set(focused)
    expect(page.locator("#id_leave_empty")).to_be_hidden()


def test_the_accessibility_tree_does_not_hold_the_trap(site, page):
    page.goto("/")

    tree = page.locator("form").aria_snapshot()

    assert 'textbox "Name"' in tree
    assert 'textbox "Email address"' in tree
    assert "Leave this field empty" not in tree
    expect(page.get_by_role("textbox")).to_have_count(2)
    expect(page.get_by_role("textbox", name="Leave this field empty")).to_have_count(0)
