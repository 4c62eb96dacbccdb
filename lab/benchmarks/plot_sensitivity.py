"""Credit's alpha / beta sensitivity plot (docs/img/credit_sensitivity.png) from gpu_grid.py's sensitivity.json.

Two panels over beta (decay), one line per alpha (fusion strength): mean NFE and accuracy, with the fixed-steps and
threshold rules as horizontal references. Run: python lab/benchmarks/plot_sensitivity.py SENSITIVITY.json OUT.png
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from engine.decoding.registry import BASELINE, RULES, rule_entry  # noqa: E402


def knobs(rule: str) -> tuple[float, float]:
    values = dict(part.split("=") for part in rule.split(":", 1)[1].split(","))
    return float(values["alpha"]), float(values["beta"])


def rule_id(spec: str) -> str:
    """The registry id of a cell's rule spec (files written before the registry say "fixed" for the baseline)."""
    name = spec.partition(":")[0]
    return BASELINE if name == "fixed" else rule_entry(name).id


def main(source: str, target: str) -> None:
    data = json.loads(Path(source).read_text())
    cells = {c["rule"]: c for c in data["cells"]}
    references = {rule_id(r): c for r, c in cells.items() if ":" not in r}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    score = "answers ending in EOS, not degenerate (%)" if data["task_set"] == "chat" else "exact-answer accuracy (%)"
    for ax, metric, label in ((axes[0], "mean_nfe", "mean forward passes (NFE)"), (axes[1], "accuracy", score)):
        for alpha in data["alphas"]:
            points = sorted((knobs(r)[1], c[metric]) for r, c in cells.items()
                            if r.startswith("credit:") and knobs(r)[0] == alpha)
            ax.plot(*zip(*points), marker="o", label=f"alpha = {alpha}")
        for rule, style in ((BASELINE, ":"), ("threshold", "--")):
            if rule in references:
                ax.axhline(references[rule][metric], color="grey", linestyle=style,
                           label=f"{RULES[rule].label} (reference)")
        ax.set_xlabel("beta (credit decay per step)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    env = data["environment"]
    fig.suptitle(f"CreditDecoding sensitivity, bundled model, {data['task_set']} (n = {references[BASELINE]['n']}), "
                 f"gen {data['gen_length']}, block {data['block_length']}, tau 0.9, gamma 0.2 - "
                 f"{env['device_name']}, {env['commit'][:10]}", fontsize=9)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
