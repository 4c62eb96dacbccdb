"""The bias views: kept against candidate lengths per run, and the seeds table of repeated configurations."""
import copy
import dataclasses

import numpy as np

from analysis.selection_bias import configuration_key, length_distributions, seeds_table


def test_length_boxes_hold_every_candidate_and_every_kept_one(uds_runlogs):
    fig = length_distributions(uds_runlogs)
    everything, kept = fig.data
    for name, log in uds_runlogs.items():
        frame = log.candidates_frame()
        ys = np.array(everything.y)[np.array(everything.x) == name]
        assert sorted(ys) == sorted(frame["length"])
        ys = np.array(kept.y)[np.array(kept.x) == name]
        assert sorted(ys) == sorted(frame.loc[frame["selected"], "length"])
    assert fig.layout.boxmode == "group"


def _repeat(log, seed, loss):
    again = copy.copy(log)
    again.config = copy.deepcopy(log.config)
    again.config["selection"]["seed"] = again.config["train"]["seed"] = seed
    again.eval_summary = dataclasses.replace(log.eval_summary, loss=loss)
    return again


def test_seeds_table_groups_repeats_and_reports_mean_and_sd(uds_runlogs):
    assert seeds_table(uds_runlogs).empty  # three selectors, one seed each: nothing repeated
    uds = uds_runlogs["uds"]
    runs = {**uds_runlogs, "uds seed 22": _repeat(uds, 22, 2.0), "uds seed 23": _repeat(uds, 23, 4.0)}
    assert configuration_key(runs["uds seed 22"]) == configuration_key(uds)
    assert configuration_key(uds) != configuration_key(uds_runlogs["random"])
    table = seeds_table(runs)
    assert len(table) == 1 and table.loc[0, "runs"] == 3 and table.loc[0, "seeds"] == "21, 22, 23"
    losses = [uds.eval_summary.loss, 2.0, 4.0]
    mean, sd = np.mean(losses), np.std(losses, ddof=1)
    assert table.loc[0, "held-out loss"] == f"{mean:.4g} ± {sd:.2g}"
    frame = uds.candidates_frame()
    kept = frame.loc[frame["selected"], "length"].mean()
    assert table.loc[0, "kept length"] == f"{kept:.4g} ± {0.0:.2g}"
