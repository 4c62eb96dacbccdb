"""How long each Selection Lab view takes on a saved run log (no model involved): table, filters, scale check, figures,
buffer map (first fit and reuse), linked detail, comparison, export.

Run: .venv/bin/python -m lab.benchmarks.bench_selection_views --runlog FOLDER
Prints one JSON object of seconds (best of --repeats, except the first map fit, timed once); the numbers go to
docs/SELECTION_LAB.md ("Views").
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Callable

from analysis import runlog_figures, runlog_views
from analysis.buffer_map import buffer_map_figure, build_buffer_map
from analysis.projection import ProjectionConfig
from engine.uds.runlog_io import load_runlog


def _best(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return round(best, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runlog", required=True, help="saved run log folder")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the best is reported")
    args = parser.parse_args()
    start = time.perf_counter()
    log = load_runlog(args.runlog)
    load = round(time.perf_counter() - start, 4)
    start = time.perf_counter()
    umap_map = build_buffer_map(log)
    first_map = round(time.perf_counter() - start, 3)
    pick = next(c for c in log.candidates if c.step == log.steps[-1].step and not c.selected)
    table = runlog_views.candidate_table(log)
    strip = log.strip(pick.step, pick.position) or log.strips[-1]
    r = args.repeats
    timings = {
        "load_runlog": load,
        "candidate_table": _best(lambda: runlog_views.candidate_table(log), r),
        "filter_table": _best(lambda: runlog_views.filter_table(table, status="selected", query="chat"), r),
        "scale_check": _best(lambda: runlog_views.scale_check(log), r),
        "summary_markdown": _best(lambda: runlog_views.summary_markdown(log), r),
        "utility_over_steps": _best(lambda: runlog_figures.utility_over_steps(log), r),
        "score_decomposition": _best(lambda: runlog_figures.score_decomposition(log), r),
        "buffer_map_first_fit_umap": first_map,
        "buffer_map_refit_umap_warm": _best(lambda: build_buffer_map(log), 1),
        "buffer_map_fit_pca": _best(lambda: build_buffer_map(log, ProjectionConfig(method="pca")), r),
        "buffer_map_figure": _best(lambda: buffer_map_figure(log, umap_map, None, "category"), r),
        "detail_text_scores_neighbours": _best(lambda: (runlog_views.candidate_text(log, pick.step, pick.position),
                                                        runlog_views.candidate_scores(log, pick.step, pick.position),
                                                        runlog_views.buffer_neighbours(log, pick.step, pick.position)),
                                               r),
        "token_strip": _best(lambda: runlog_figures.token_strip(strip), r),
        "compare_runs_x3": _best(lambda: runlog_figures.compare_runs({"a": log, "b": log, "c": log}), r),
        "selected_jsonl": _best(lambda: runlog_views.selected_jsonl(log), r),
    }
    print(json.dumps({"runlog": args.runlog, "steps": len(log.steps), "candidates": len(log.candidates),
                      "map_method": umap_map.method, "cpu_count": os.cpu_count(),
                      "load_average": [round(x, 1) for x in os.getloadavg()], "seconds": timings}, indent=1))


if __name__ == "__main__":
    main()
