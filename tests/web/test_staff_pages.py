"""The staff Q&A page in a real browser (Chromium via Playwright) against the real server:
sign in, ask, watch the answer stream in, open a citation, give feedback, follow up in the thread,
rename and delete it, change the language."""

import pytest
from django.contrib.auth.models import Group, User
from playwright.sync_api import expect

from kb.models import Collection, Feedback
from tests.test_search_access import ingest
from tests.web.conftest import screenshot

pytestmark = pytest.mark.django_db(transaction=True)

LEAVE = (
    b"# Annual leave\n\nEmployees may carry over five days of annual leave into the next year. "
    b"Leave requests are approved by the line manager.\n"
)
PAYROLL = b"# Payroll\n\nSalaries are paid on the 25th of each month.\n"


@pytest.fixture
def staff():
    hr, finance = Collection.objects.create(name="HR"), Collection.objects.create(name="Finance")
    readers = Group.objects.create(name="staff")
    hr.reader_groups.add(readers)
    alice = User.objects.create_user("alice", password="pw-alice-123")
    alice.groups.add(readers)
    ingest(hr, "leave.md", LEAVE)
    ingest(finance, "payroll.md", PAYROLL)
    return alice


def sign_in(page, web_server, username="alice", password="pw-alice-123"):
    page.goto(web_server + "/")
    expect(page).to_have_url(f"{web_server}/accounts/login/?next=/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{web_server}/")


def test_sign_in_ask_stream_open_a_citation_and_give_feedback(page, web_server, staff):
    page.goto(web_server + "/accounts/login/")
    screenshot(page, "staff-sign-in")
    sign_in(page, web_server)
    # Only what alice may read is offered.
    expect(page.locator("fieldset.collections label")).to_have_text(["HR"])
    screenshot(page, "staff-empty")

    page.get_by_label("Question", exact=True).fill("Who approves leave requests?")
    page.get_by_role("button", name="Ask").click()
    # Tokens appear while the answer is written, before the checked answer replaces them.
    page.wait_for_function("document.querySelector('#live')?.textContent.length > 0")
    answer = page.locator("#thread .turn").last
    expect(answer.locator(".answer-head")).to_be_visible(timeout=60_000)
    expect(answer.locator(".outcome")).to_have_text("Answered")
    expect(answer.locator(".sentence .badge").first).to_be_visible()
    markers = answer.locator("button.cite")
    expect(markers.first).to_be_visible()
    expect(answer.locator(".sources li")).not_to_have_count(0)
    expect(page.locator("#history-list li").first).to_contain_text("Who approves leave requests?")
    assert "/conversations/" in page.url

    markers.first.click()
    panel = page.locator("#panel")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("Annual leave")
    highlighted = panel.locator("mark#cited")
    expect(highlighted).not_to_be_empty()
    assert highlighted.text_content() in LEAVE.decode()
    screenshot(page, "staff-answer-with-source")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()

    page.get_by_placeholder("Optional comment").fill("Clear and to the point.")
    page.get_by_role("button", name="Helpful", exact=True).click()
    expect(page.locator(".feedback .thanks")).to_contain_text("Thank you")
    feedback = Feedback.objects.get()
    assert (feedback.rating, feedback.comment, feedback.question.user) == (
        "up",
        "Clear and to the point.",
        staff,
    )

    # The history keeps the answer: reloading its page shows it again, feedback included.
    page.reload()
    expect(page.locator("#thread .answer-head")).to_contain_text("Who approves leave requests?")
    expect(page.locator(".feedback .thanks")).to_be_visible()


def test_a_follow_up_is_answered_in_its_thread_which_is_renamed_and_deleted(page, web_server, staff):
    sign_in(page, web_server)
    question = page.get_by_label("Question", exact=True)
    question.fill("Who approves leave requests?")
    page.get_by_role("button", name="Ask").click()
    turns = page.locator("#thread .turn")
    expect(turns.first.locator(".outcome")).to_be_visible(timeout=60_000)
    expect(question).to_be_empty()
    question.fill("And how many days carry over?")
    page.get_by_role("button", name="Ask").click()
    expect(turns).to_have_count(2)
    expect(turns.last.locator(".outcome")).to_be_visible(timeout=60_000)
    # The follow-up was searched as a standalone question, and the page says as what.
    # (The engine's rewrite or the rules': tests/test_conversations.py tells which is used when.)
    expect(turns.last.locator(".searched")).to_contain_text("Searched for: ")
    expect(turns.last.locator(".searched")).to_contain_text("carry over")
    entries = page.locator("#history-list li")
    expect(entries).to_have_count(1)
    expect(entries.first).to_contain_text("2 questions")
    screenshot(page, "staff-conversation")

    page.reload()  # the thread's address shows both turns, the follow-up's rewrite included
    expect(turns).to_have_count(2)
    expect(page.get_by_label("Follow-up question")).to_be_visible()
    page.get_by_label("Conversation title").fill("Leave approvals")
    page.get_by_role("button", name="Rename").click()
    expect(entries.first).to_contain_text("Leave approvals")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(f"{web_server}/")
    expect(page.locator("#history-empty")).to_be_visible()


def test_the_page_works_in_chinese_and_on_a_phone(browser, web_server, staff):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    sign_in(page, web_server)
    page.get_by_label("Language").select_option("zh-hans")
    expect(page.get_by_label("问题", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="提问")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing forces sideways scrolling on a phone
    screenshot(page, "staff-phone-chinese")
    context.close()


def test_the_keyboard_alone_asks_and_errors_are_shown(page, web_server, staff):
    sign_in(page, web_server)
    page.get_by_label("Question", exact=True).focus()
    page.keyboard.type("bonus\x1bdates")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#thread .error")).to_contain_text("control characters")
