"""End to end in Debian Chromium: run a short selection in the Selection Lab, click a buffer-map point and a table
row, type a step and position and press Enter, check the detail view renders, export the selected subset; empty
states before the run; Cancel stops the training thread. Screenshots go to tests/artifacts/ (ignored)."""
import json
import re
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS

TIMEOUT_MS = 240_000
STEPS = 6


@pytest.fixture(scope="module")
def page(app_url, chromium):
    tab = chromium.new_page(viewport={"width": 1500, "height": 1800}, accept_downloads=True)
    tab.set_default_timeout(TIMEOUT_MS)
    tab.goto(app_url)
    tab.get_by_role("tab", name="Selection Lab").click()
    tab.wait_for_selector("#uds-run")
    yield tab
    tab.close()


def set_number(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input").first
    box.fill(str(value))
    box.press("Tab")


def detail_key(page) -> tuple[int, int]:
    text = page.locator("#uds-detail-text").inner_text()
    found = re.search(r"step (\d+), position (\d+)", text)
    assert found, text
    return int(found.group(1)), int(found.group(2))


def test_run_inspect_and_export_in_the_page(page):
    # Issue 17, item 6: before a run, tables show their headers and the detail area says what will appear there
    assert "Click a point of the buffer map" in page.locator("#uds-detail-text").inner_text()
    assert not page.locator("#uds-strip").is_visible()
    assert "distance" in page.locator("#uds-neighbours thead").inner_text()
    page.get_by_text("Model and evaluation").click()
    page.locator("#uds-model input").click()
    page.get_by_role("option", name=re.compile("tiny random Llama")).click()
    set_number(page, "uds-steps", STEPS)
    set_number(page, "uds-cutoff", 128)
    set_number(page, "uds-eval-items", 2)
    page.locator("#uds-run").click()
    page.wait_for_function("document.querySelector('#uds-status').innerText.startsWith('Done:')")
    assert f"{STEPS} steps, K = 2 of B = 8" in page.locator("#uds-summary").inner_text()
    # Issue 17, item 7: 12 buffer points are too few for UMAP; the radio follows the map to PCA
    assert page.locator("#uds-map-method input[value=PCA]").is_checked()
    assert "PCA is drawn" in page.locator("#uds-buffer-map .gtitle").text_content()

    # A click on a buffer-map point opens that candidate (through the plotly_click bridge).
    page.wait_for_selector("#uds-buffer-map .scatterlayer .trace .points path")
    points = page.locator("#uds-buffer-map .scatterlayer .trace .points path")
    assert points.count() >= STEPS * 2  # the buffer after the last step, plus the rejected candidates
    points.first.click(force=True)
    page.wait_for_function("/step \\d+, position \\d+/.test(document.querySelector('#uds-detail-text').innerText)")
    step, position = detail_key(page)
    assert page.locator("#uds-pick-step input").input_value() == str(step)
    page.wait_for_selector("#uds-strip .heatmaplayer")
    assert "per-token strip" in page.locator("#uds-strip .gtitle").text_content()
    page.locator("#uds-buffer-map").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "selection_lab.png"), full_page=True)

    # A click on a table row opens that row's candidate.
    page.get_by_role("tab", name="Candidates").click()
    page.locator('#uds-table [data-testid="cell-9-2"]').click()  # row 9: step 1, position 1
    page.wait_for_function("document.querySelector('#uds-detail-text').innerText.includes('step 1, position 1')")
    assert detail_key(page) == (1, 1)

    # Issue 17, item 8: Enter in the step or position box opens that candidate
    set_number(page, "uds-pick-step", 2)
    box = page.locator("#uds-pick-position input").first
    box.fill("5")
    box.press("Enter")
    page.wait_for_function("document.querySelector('#uds-detail-text').innerText.includes('step 2, position 5')")

    page.locator("#uds-export").click()
    link = page.locator("#uds-file a").first
    link.wait_for()
    with page.expect_download() as download:
        link.click()
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert len(lines) == STEPS * 2 and all("prompt" in json.loads(line) for line in lines)
    page.screenshot(path=str(ARTIFACTS / "selection_lab_table.png"), full_page=True)


def test_cancel_in_the_page_stops_the_training_thread(page):
    set_number(page, "uds-steps", 500)
    page.locator("#uds-run").click()
    page.wait_for_function("document.querySelector('#uds-status').innerText.includes('/500')")
    assert any(t.name == "selection-run" for t in threading.enumerate())
    page.locator("#uds-cancel").click()
    deadline = time.monotonic() + 60
    while any(t.name == "selection-run" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(t.name == "selection-run" for t in threading.enumerate())  # the loop itself stopped
    page.wait_for_function("document.querySelector('#uds-status').innerText.startsWith('Cancelled')")
    assert "/500" not in page.locator("#uds-status").inner_text()


def test_loading_the_shipped_fair_test_opens_the_seeds_view(page):
    """The shipped example set (15 compact run logs) loads without a model and opens Compare runs, whose seeds table
    lists the five arms."""
    page.locator("#uds-load-examples").click()
    page.wait_for_function("(document.querySelector('#uds-seeds') || {}).innerText?.includes('Utility only')")
    assert page.locator("button[role=tab][aria-selected=true]", has_text="Compare runs").count() == 1
    seeds = page.locator("#uds-seeds").inner_text()
    assert all(arm in seeds for arm in ("Full", "Random", "UDS as released", "Utility only"))
