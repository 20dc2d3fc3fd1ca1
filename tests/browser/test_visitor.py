"""
A visitor signs up in a real browser: with the mouse, with mistakes, with the
keyboard only and on a small phone. The page fixtures fail a test whose pages
log a console error or violate the Content-Security-Policy.
"""

import uuid

from tests.browser.conftest import PHONE, playwright_expect, query, wait_as_a_person

expect = playwright_expect()


def unique_email(label):
    return f"{label}-{uuid.uuid4().hex[:8]}@example.com"


def stored(site, email):
    return query(
        site, "SELECT name, email FROM accounts_signup WHERE email = %s", (email,)
    )


def test_sign_up_reaches_the_thank_you_page(site, page, screenshot):
    page.goto("/")
    expect(page).to_have_title("Sign up")
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, please sign up!")
    screenshot(page, "signup")

    email = unique_email("grace")
    page.get_by_label("Name").fill("Grace Hopper")
    page.get_by_label("Email address").fill(email)
    wait_as_a_person(page)
    page.get_by_role("button", name="Go").click()

    expect(page).to_have_url(f"{site.base_url}/thanks/")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Thank you for signing up!"
    )
    screenshot(page, "thanks")
    assert stored(site, email) == [("Grace Hopper", email)]


def test_each_mistake_is_shown_next_to_its_field_and_announced(site, page, screenshot):
    page.goto("/")
    page.get_by_label("Email address").fill("grace.example.com")
    page.get_by_role("button", name="Go").click()

    # The same address, the form again, nothing stored.
    expect(page).to_have_url(f"{site.base_url}/")
    expect(page).to_have_title("Error: Sign up")
    summary = page.get_by_role("alert")
    expect(summary.get_by_role("heading")).to_have_text(
        "Please correct the errors below."
    )
    expect(summary.get_by_role("link")).to_have_text(
        [
            "Name: Please enter your name.",
            "Email address: Please enter a valid email address, like name@example.com.",
        ]
    )

    name = page.get_by_label("Name")
    email = page.get_by_label("Email address")
    # Each message sits in its field's own box, is what assistive technology
    # reads out with the field, and marks the field invalid.
    for field, message in (
        (name, "Please enter your name."),
        (email, "Please enter a valid email address, like name@example.com."),
    ):
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(field).to_have_accessible_description(message)
        box = page.locator(".field").filter(has=field)
        expect(box.locator(".errorlist")).to_have_text(message)

    # Focus on the first field in error; what was typed is still there.
    expect(name).to_be_focused()
    expect(email).to_have_value("grace.example.com")
    screenshot(page, "signup-errors")
    assert stored(site, "grace.example.com") == []


def test_focus_goes_to_the_first_field_in_error_and_typed_values_stay(site, page):
    page.goto("/")
    page.get_by_label("Name").fill("Katherine Johnson")
    page.get_by_label("Email address").fill("katherine@")
    page.get_by_role("button", name="Go").click()

    email = page.get_by_label("Email address")
    expect(email).to_be_focused()
    expect(email).to_have_value("katherine@")
    expect(page.get_by_label("Name")).to_have_value("Katherine Johnson")
    expect(page.get_by_label("Name")).not_to_have_attribute("aria-invalid", "true")

    # The link in the summary leads to the field as well.
    page.get_by_role("link", name="Email address: Please enter a valid").click()
    expect(email).to_be_focused()

    fixed = unique_email("katherine")
    email.fill(fixed)
    wait_as_a_person(page)
    email.press("Enter")
    expect(page).to_have_url(f"{site.base_url}/thanks/")
    assert stored(site, fixed) == [("Katherine Johnson", fixed)]


def focused(page):
    """(tag, id or text, outline style) of the element that has the focus."""
    return page.evaluate(
        """() => {
            const element = document.activeElement;
            return [
                element.tagName.toLowerCase(),
                element.id || element.textContent.trim(),
                getComputedStyle(element).outlineStyle,
            ];
        }"""
    )


def test_the_keyboard_alone_is_enough(site, page):
    page.goto("/")
    email = unique_email("alan")

    page.keyboard.press("Tab")
    assert focused(page) == ["input", "id_name", "solid"]
    page.keyboard.type("Alan Turing")
    page.keyboard.press("Tab")
    assert focused(page) == ["input", "id_email", "solid"]
    page.keyboard.type("not an address")
    page.keyboard.press("Tab")
    assert focused(page) == ["button", "Go", "solid"]
    page.keyboard.press("Enter")

    # The error puts the focus where the fix is: type over it and send.
    expect(page.get_by_label("Email address")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type(email)
    wait_as_a_person(page)
    page.keyboard.press("Enter")

    expect(page).to_have_url(f"{site.base_url}/thanks/")
    page.keyboard.press("Tab")
    assert focused(page) == ["a", "Back to the form", "solid"]
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{site.base_url}/")
    assert stored(site, email) == [("Alan Turing", email)]


def test_a_small_phone_gets_the_whole_form_without_sideways_scrolling(
    site, open_context, screenshot
):
    context = open_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.goto("/")

    layout = page.evaluate(
        """() => ({
            page: document.documentElement.scrollWidth,
            window: window.innerWidth,
        })"""
    )
    assert layout["page"] <= layout["window"], layout
    for control in (
        page.get_by_label("Name"),
        page.get_by_label("Email address"),
        page.get_by_role("button", name="Go"),
    ):
        box = control.bounding_box()
        assert box["x"] >= 0, box
        assert box["x"] + box["width"] <= PHONE["width"], box
        # Big enough to hit with a thumb (WCAG 2.5.8 asks for 24 px).
        assert box["height"] >= 24, box
    # 16 px or more: phones do not zoom into the field on focus.
    font_size = page.get_by_label("Name").evaluate(
        "element => parseFloat(getComputedStyle(element).fontSize)"
    )
    assert font_size >= 16
    screenshot(page, "signup-phone")

    email = unique_email("hedy")
    page.get_by_label("Name").tap()
    page.keyboard.type("Hedy Lamarr")
    page.get_by_label("Email address").tap()
    page.keyboard.type(email)
    wait_as_a_person(page)
    page.get_by_role("button", name="Go").tap()
    expect(page).to_have_url(f"{site.base_url}/thanks/")
    assert stored(site, email) == [("Hedy Lamarr", email)]
