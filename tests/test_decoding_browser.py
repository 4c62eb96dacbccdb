"""End to end in Debian Chromium: decode a prompt in the page, scrub to a step, check the heatmap and the token
inspector render, then import a trace file and check every panel follows it. Screenshots go to tests/artifacts/
(ignored by git)."""

import re

import pytest

from app import examples
from tests.conftest import ARTIFACTS

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def page(app_url, chromium):
    tab = chromium.new_page(viewport={"width": 1400, "height": 1600})
    tab.set_default_timeout(TIMEOUT_MS)
    tab.goto(app_url)
    tab.wait_for_selector("#dllm-decode")
    yield tab
    tab.close()


def set_number(page, elem_id: str, value: int) -> None:
    """Type into a slider's / number's input box and commit it, as a user would."""
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")


def test_decode_scrub_and_inspect_in_the_page(page):
    page.locator("#dllm-model input").click()
    page.get_by_role("option", name=re.compile(r"^tiny-random ·")).click()
    page.locator("#dllm-decode").click()
    page.wait_for_function("document.querySelector('#dllm-status').innerText.startsWith('done')")
    status = page.locator("#dllm-status").inner_text()
    nfe = int(status.split("NFE ")[1].split(",")[0])
    assert page.locator("#dllm-live span[title]").count() == 64  # one token box per answer position
    page.wait_for_selector("#dllm-heatmap .heatmaplayer")
    assert "page 1 of 1" in page.locator("#dllm-heatmap .gtitle").text_content()
    page.screenshot(path=str(ARTIFACTS / "decoding_explorer.png"), full_page=True)

    page.get_by_role("tab", name="Scrub").click()
    set_number(page, "dllm-step", 3)
    page.wait_for_function("document.querySelector('#dllm-scrub').innerText.includes('after step 3 of')")
    assert f"after step 3 of {nfe - 1}" in page.locator("#dllm-scrub").inner_text()

    page.get_by_role("tab", name="Inspect token").click()
    set_number(page, "dllm-position", 5)
    page.wait_for_function("(document.querySelector('#dllm-inspector .gtitle') || {}).textContent?.includes("
                           "'position 5')")
    assert page.locator("#dllm-inspector .scatterlayer .trace").count() >= 2  # raw p and fused ŝ lines
    page.screenshot(path=str(ARTIFACTS / "decoding_explorer_inspector.png"), full_page=True)


def test_importing_a_trace_updates_every_panel(page):
    """Issue 17: the top panel (status, token strip, answer, summary) and the views below all show the import."""
    trace = examples.example_trace("capital_threshold")
    nfe = trace.meta["nfe"]
    before = page.locator("#dllm-live").inner_html()
    page.get_by_role("tab", name="Export / import").click()
    page.locator("#dllm-upload input[type=file]").set_input_files(str(examples.FOLDER / "capital_threshold.json.gz"))
    page.wait_for_function("document.querySelector('#dllm-status').innerText.startsWith('imported trace')")
    assert f"NFE {nfe}" in page.locator("#dllm-status").inner_text()
    page.wait_for_function(f"document.querySelector('#dllm-trace-info').innerText.includes('NFE {nfe},')")
    assert trace.meta["prompt"] in page.locator("#dllm-trace-info").inner_text()
    assert page.locator("#dllm-answer textarea").input_value() == trace.meta["answer"]
    stats = page.locator("#dllm-stats").inner_text()
    assert "bundled" in stats and "threshold" in stats and "tiny-random" not in stats
    live = page.locator("#dllm-live").inner_html()
    assert live != before and "masked" not in live
    page.screenshot(path=str(ARTIFACTS / "decoding_explorer_imported.png"), full_page=True)
