"""The curation console in a real browser: a curator uploads files and watches their jobs reach
done (a real worker ingests them); an administrator's dashboard draws its charts."""

import re

import pytest
from django.contrib.auth.models import Group, User
from playwright.sync_api import expect

from kb.models import Answer, Collection, DocumentVersion, Feedback, Question
from tests.web.conftest import screenshot

pytestmark = pytest.mark.django_db(transaction=True)

DROPPED = """([name, text]) => {
    const data = new DataTransfer();
    data.items.add(new File([text], name, {type: "text/markdown"}));
    return data;
}"""


def sign_in_to_console(page, web_server, username, password):
    page.goto(f"{web_server}/admin/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{web_server}/admin/")


def test_a_curator_uploads_two_files_and_watches_them_reach_done(page, web_server, celery_worker, tmp_path):
    contracts = Collection.objects.create(name="Contracts")
    curators = Group.objects.create(name="legal-curators")
    contracts.curator_groups.add(curators)
    carla = User.objects.create_user("carla", password="pw-carla-123", is_staff=True)
    carla.groups.add(curators)
    Collection.objects.create(name="Board minutes")  # not hers: never shown to her
    nda, msa = tmp_path / "nda.md", tmp_path / "msa.md"
    nda.write_text("# Non-disclosure\n\nThe recipient keeps the information secret for five years.\n")
    msa.write_text("# Master services\n\n" + "The supplier delivers the services on time. " * 200)

    sign_in_to_console(page, web_server, "carla", "pw-carla-123")
    page.goto(f"{web_server}/admin/kb/collection/")
    expect(page.locator("#result_list")).to_contain_text("Contracts")
    expect(page.locator("#result_list")).not_to_contain_text("Board minutes")
    page.goto(f"{web_server}/admin/kb/collection/{contracts.pk}/upload/")
    expect(page.get_by_text("Drop files here")).to_be_visible()
    # One file dropped on the zone (a drop event carrying a File, as a desktop drag sends), one chosen.
    page.locator("#drop-zone").dispatch_event(
        "drop", {"dataTransfer": page.evaluate_handle(DROPPED, [nda.name, nda.read_text()])}
    )
    page.locator("input[type=file]").set_input_files([msa])
    rows = page.locator("#upload-jobs tbody tr")
    expect(rows).to_have_count(2)
    for row in rows.all():
        expect(row.locator(".state")).to_have_text("Done", timeout=120_000)
    expect(rows.nth(1).locator(".chunks")).to_have_text(re.compile(r"^(\d+) / \1$"))
    screenshot(page, "console-upload-progress")
    assert set(DocumentVersion.objects.values_list("job_state", flat=True)) == {"done"}

    page.goto(f"{web_server}/admin/kb/document/")
    page.get_by_role("link", name="Master services").click()
    page.get_by_role("link", name="7 chunks").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(7)
    expect(page.locator("#result_list")).to_contain_text("The supplier delivers the services on time.")
    screenshot(page, "console-chunk-browser")


def test_the_dashboard_draws_its_charts_from_stored_data(page, web_server):
    User.objects.create_superuser("root", password="pw-root-123")
    alice = User.objects.create_user("alice")
    for latency in (800, 1500, 2600):
        answer = Answer.objects.create(
            outcome="answered", first_token_ms=400, generation_ms=1400, generated_tokens=15
        )
        question = Question.objects.create(user=alice, text="q", answer=answer, latency_ms=latency)
    Feedback.objects.create(question=question, rating="down", comment="Out of date")

    sign_in_to_console(page, web_server, "root", "pw-root-123")
    page.get_by_role("link", name="Dashboard").click()
    charts = page.locator("svg.chart")
    expect(charts).to_have_count(8)
    expect(page.locator(".kb-totals")).to_contain_text("3")
    # Real marks: bars for the questions, a line or dot for the latency.
    assert charts.nth(0).locator("rect").count() > 2
    assert charts.nth(1).locator("circle").count() >= 2
    screenshot(page, "console-dashboard")
    page.goto(f"{web_server}/admin/")
    page.get_by_role("link", name="Review queue").click()
    expect(page.locator("#review-queue tbody tr")).to_have_count(1)  # the answer with negative feedback
    screenshot(page, "console-review-queue")
    page.locator("#review-queue a").first.click()
    expect(page.get_by_text("Out of date")).to_be_visible()
    page.get_by_label("The right answer").fill("Five days carry over.")
    page.get_by_role("button", name="Save the right answer").click()
    expect(page.locator("#review-queue")).to_contain_text("Nothing to review")


def test_the_api_docs_page_lists_every_operation(page, web_server):
    page.goto(f"{web_server}/api/v1/docs")
    expect(page.locator(".opblock").first).to_be_visible(timeout=20_000)
    assert page.locator(".opblock").count() == 20
    screenshot(page, "api-docs")
