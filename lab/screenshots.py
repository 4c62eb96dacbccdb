"""The README's screenshots (docs/img/decoding_explorer.png, docs/img/selection_lab.png), taken in Debian Chromium
against the app served in this process, as a newcomer first sees each tab.

`python -m lab.screenshots [--steps 10] [--model smollm2] [--out docs/img]`. Decoding Explorer: the page as it opens
(the cached example trace, no model call). Selection Lab: a real run of the picked model on the bundled mixture
(SmolLM2 for 10 steps takes a few minutes on a 2-core CPU; `--model tiny-random` takes seconds, for a smoke run),
coloured by category, one candidate opened from the map.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

WIDTH = 1400  # the viewport: the tabs' two-column layout at a common laptop width
TIMEOUT_MS = 1_800_000  # a SmolLM2 run on a loaded 2-core CPU


def serve() -> str:
    from app.main import build_demo, launch

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch(build_demo(), server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return f"http://127.0.0.1:{port}/"


def decoding_explorer(page, out: Path) -> None:
    page.wait_for_function("document.querySelector('#dllm-status').innerText.startsWith('recorded trace')")
    page.wait_for_selector("#dllm-heatmap .heatmaplayer")
    page.wait_for_timeout(1000)  # let the plots settle
    page.screenshot(path=str(out / "decoding_explorer.png"), full_page=True)


def selection_lab(page, out: Path, model: str, steps: int) -> None:
    from app.selection_runs import MODEL_CHOICES

    label = next(text for text, model_id in MODEL_CHOICES.items() if model_id == model)
    page.get_by_role("tab", name="Selection Lab").click()
    page.get_by_text("Model and evaluation").click()
    page.locator("#uds-model input").click()
    page.get_by_role("option", name=re.compile(re.escape(label[:20]))).click()
    box = page.locator("#uds-steps input").first
    box.fill(str(steps))
    box.press("Tab")
    page.get_by_text("Model and evaluation").click()
    page.locator("#uds-run").click()
    page.wait_for_function("document.querySelector('#uds-status').innerText.startsWith('Done:')")
    page.get_by_label("category").first.check()
    page.wait_for_timeout(1500)
    page.locator("#uds-buffer-map .scatterlayer .trace .points path").first.click(force=True)
    page.wait_for_selector("#uds-strip .heatmaplayer")
    page.wait_for_timeout(1000)
    page.screenshot(path=str(out / "selection_lab.png"), full_page=True)


def main() -> None:
    from playwright.sync_api import sync_playwright

    from lab.browser import CHROMIUM, CHROMIUM_ARGS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="Selection Lab run length")
    parser.add_argument("--model", default="smollm2", help="Selection Lab model id (smollm2 or tiny-random)")
    parser.add_argument("--out", default="docs/img", help="folder for the two PNGs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    url = serve()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        decoding_explorer(page, out)
        selection_lab(page, out, args.model, args.steps)
        browser.close()
    print(f"wrote {out / 'decoding_explorer.png'} and {out / 'selection_lab.png'}")


if __name__ == "__main__":
    main()
