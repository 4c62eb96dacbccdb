"""The report tail of the CPU benchmarks run as modules (`python -m lab.benchmarks.load`, `... .threads`)."""
from __future__ import annotations

import json
from pathlib import Path


def write_report(result: dict, table: str, out: str | None, name: str) -> None:
    """Print the Markdown table and the JSON; with `out`, also write OUT/NAME.json and OUT/NAME.md."""
    print(table)
    print(json.dumps(result))
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.json").write_text(json.dumps(result, indent=1))
        (Path(out) / f"{name}.md").write_text(table + "\n")
