"""End to end in Debian Chromium: the first page (a cached example, NFE first), decode a prompt in the page, scrub to a
step, check the heatmap and the token inspector render, mark the views stale when a knob moves, sweep a knob, page a
longer answer, then import a trace file and check every panel follows it. Screenshots go to tests/artifacts/ (ignored
by git)."""

import re

import pytest

from app import examples
from tests.conftest import ARTIFACTS

TIMEOUT_MS = 120_000
STALE = "#dllm-stale [data-testid=markdown]"  # the mark's text (its hidden progress timer sits beside it)
INFO = "#dllm-trace-info [data-testid=markdown]"  # the caption's text


@pytest.fixture(scope="module")
def page(app_url, chromium):
    tab = chromium.new_page(viewport={"width": 1400, "height": 1600})
    tab.set_default_timeout(TIMEOUT_MS)
    tab.goto(app_url)
    tab.wait_for_selector("#dllm-decode")
    yield tab
    tab.close()


def set_number(page, elem_id: str, value: float) -> None:
    """Type into a slider's / number's input box and commit it, as a user would."""
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")


def test_the_first_page_shows_a_recorded_trace_nfe_first(page):
    """Issue 17, items 2 and 6: the cached example says NFE first and the machine it was recorded on, its strip
    renders the end of the answer as [EOS] x n (as live decodes do), and empty tables show their headers."""
    page.wait_for_function("document.querySelector('#dllm-status').innerText.startsWith('recorded trace')")
    status = page.locator("#dllm-status").inner_text()
    assert re.search(r"\): NFE \d+ for \d+ answer tokens; recorded on a 2-core CPU", status), status
    live = page.locator("#dllm-live")
    assert "[EOS] ×" in live.inner_text() and "im_end" not in live.inner_html()
    page.wait_for_function(f"document.querySelector('{INFO}').innerText.startsWith('NFE ')")
    page.wait_for_timeout(1000)  # the stale check runs after the views
    assert page.locator(STALE).inner_text().strip() == ""  # the default knobs are the example's
    page.get_by_role("tab", name="Compare rules").click()
    headers = page.locator("#dllm-compare-table thead").inner_text()
    assert "same tokens as first" in headers and "answer" in headers
    page.get_by_role("tab", name="Heatmap").click()


def test_decode_scrub_and_inspect_in_the_page(page):
    page.locator("#dllm-model input").click()
    page.get_by_role("option", name=re.compile(r"^tiny-random ·")).click()
    page.locator("#dllm-decode").click()
    page.wait_for_function("document.querySelector('#dllm-status').innerText.startsWith('done')")
    status = page.locator("#dllm-status").inner_text()
    nfe = int(status.split("NFE ")[1].split(",")[0])
    assert page.locator("#dllm-live span[title]").count() == 64  # one token box per answer position
    page.wait_for_function("(document.querySelector('#dllm-heatmap .gtitle') || {}).textContent?.includes("
                           "'page 1 of 2, block 0')")  # 64 tokens, blocks of 32: a page per block
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


def test_moved_knobs_mark_the_views_stale_until_the_next_decode(page):
    """Issue 17, item 4: with re-decode off, moving β changes no view; the page says so, and a decode clears it."""
    page.get_by_label("re-decode when α or β is released").uncheck()
    set_number(page, "dllm-beta", 0.3)
    page.wait_for_function(f"document.querySelector('{STALE}').innerText.includes('earlier decode')")
    assert "credit decay β: 0.7 → 0.3" in page.locator(STALE).inner_text()
    assert page.locator("input[value=custom]").is_checked()  # a moved knob leaves its preset
    page.locator("#dllm-decode").click()
    page.wait_for_function("document.querySelector('#dllm-status').innerText.startsWith('done')")
    page.wait_for_function(f"document.querySelector('{STALE}').innerText.trim() === ''")
    # the caption updates in its own output (shown 'processing' meanwhile): wait for it, not only for the status
    page.wait_for_function("document.querySelector('#dllm-trace-info').innerText.includes('credit decay β = 0.3')")


def test_sweep_lists_every_value_and_clears_when_the_knob_changes(page):
    """Issue 17, item 3: the sweep ends with every value decoded, ticks at the swept values, and switching the swept
    knob clears the rows (they were the other knob's)."""
    page.get_by_role("tab", name="Tune credit").click()
    pending = "document.querySelector('#dllm-sweep-table').innerText.split('pending').length - 1"
    page.wait_for_function(f"{pending} === 20")  # 5 values x 4 columns, listed before any decode
    page.locator("#dllm-sweep-grid textarea").fill("0.1, 0.9")
    page.get_by_role("button", name=re.compile("^Sweep")).click()
    page.wait_for_function("document.querySelector('#dllm-sweep-status').innerText.startsWith('done: 3 of 3')")
    assert "pending" not in page.locator("#dllm-sweep-table").inner_text()
    ticks = [t.text_content() for t in page.locator("#dllm-sweep-plot .xtick text").all()]
    assert ticks == ["0.1", "0.9"]
    page.screenshot(path=str(ARTIFACTS / "decoding_explorer_sweep.png"), full_page=True)
    page.get_by_label("alpha").check()
    page.wait_for_function("document.querySelector('#dllm-sweep-status').innerText.includes('is now fusion')")
    page.wait_for_function(f"{pending} === 20")  # the alpha grid's values, none decoded
    table = page.locator("#dllm-sweep-table").inner_text()
    assert "α" in table and "β" not in table


def test_a_longer_answer_is_paged_by_block_with_an_overview(page):
    """Issue 17, item 5: 128 tokens in blocks of 32 are four heatmap pages of one block each, with the overview."""
    page.get_by_role("tab", name="Heatmap").click()
    page.locator("#dllm-gen-length input").click()
    page.get_by_role("option", name="128", exact=True).click()
    page.locator("#dllm-decode").click()
    page.wait_for_function("document.querySelector('#dllm-status').innerText.startsWith('done')")
    page.wait_for_selector("#dllm-overview .heatmaplayer")
    assert "one row per page" in page.locator("#dllm-overview .gtitle").text_content()
    set_number(page, "dllm-page", 3)
    page.wait_for_function("document.querySelector('#dllm-heatmap .gtitle').textContent.includes('page 3 of 4')")
    assert "block 2 = positions 64-95" in page.locator("#dllm-heatmap .gtitle").text_content()
    page.screenshot(path=str(ARTIFACTS / "decoding_explorer_long.png"), full_page=True)


def test_importing_a_trace_updates_every_panel(page):
    """Issue 17: the top panel (status, token strip, answer, summary) and the views below all show the import."""
    trace = examples.example_trace("capital_threshold")
    nfe = trace.meta["nfe"]
    before = page.locator("#dllm-live").inner_html()
    page.get_by_role("tab", name="Export / import").click()
    page.locator("#dllm-upload input[type=file]").set_input_files(str(examples.FOLDER / "capital_threshold.json.gz"))
    page.wait_for_function("document.querySelector('#dllm-status').innerText.startsWith('imported trace')")
    assert f"NFE {nfe}" in page.locator("#dllm-status").inner_text()
    page.wait_for_function(f"document.querySelector('{INFO}').innerText.startsWith('NFE {nfe} with')")
    assert trace.meta["prompt"] in page.locator("#dllm-trace-info").inner_text()
    assert page.locator("#dllm-answer textarea").input_value() == trace.meta["answer"]
    stats = page.locator("#dllm-stats").inner_text()
    assert "bundled" in stats and "threshold" in stats and "tiny-random" not in stats
    live = page.locator("#dllm-live").inner_html()
    assert live != before and "masked" not in live
    page.screenshot(path=str(ARTIFACTS / "decoding_explorer_imported.png"), full_page=True)
