"""Click -> first streamed frame, measured in Debian Chromium against the launched app (bundled model, 64 tokens).

`python -m lab.benchmarks.decoding_browser [--repeats 3]`; prints one JSON object. The model is preloaded first, as
app.py does at start-up, so the number is the page's latency, not the model load."""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

STATUS = "(document.querySelector('#dllm-status')?.innerText ?? '')"
FIRST_FRAME = f"{STATUS}.includes('positions masked') || {STATUS}.startsWith('step ')"
DONE = f"{STATUS}.startsWith('done')"
RECORDED = f"{STATUS}.startsWith('recorded trace')"


def main() -> None:
    from playwright.sync_api import sync_playwright

    from app.decoding_runs import get_model
    from app.main import build_demo, launch
    from lab.browser import CHROMIUM, CHROMIUM_ARGS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    get_model("bundled")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = build_demo()
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    firsts, dones = [], []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(120_000)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function(RECORDED)
        for _ in range(args.repeats):
            start = time.perf_counter()
            page.click("#dllm-decode")
            page.wait_for_function(FIRST_FRAME, polling=10)
            firsts.append(time.perf_counter() - start)
            page.wait_for_function(DONE, polling=50)
            dones.append(time.perf_counter() - start)
        browser.close()
    demo.close()
    print(json.dumps({"click_to_first_frame_s": firsts, "median_first_frame_s": statistics.median(firsts),
                      "click_to_done_s": dones, "load_avg_1m": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
