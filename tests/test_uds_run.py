"""Selection runs through UDSTrainer on a tiny causal Llama: records, determinism, selectors, cancel, LoRA vs full, CLI."""
import json

import numpy as np
import pytest
import torch

from engine.__main__ import main
from engine.uds import SelectionConfig, TrainConfig, run_selection
from engine.uds.runlog_io import load_runlog, save_runlog

TRAIN = dict(steps=3, cutoff=96, eval_items=4, eval_max_new_tokens=3, snapshot_every=2, strip_max_steps=2)


def _run(tiny_causal_lm, dataset, selector="uds", mode="default", seed=21, **train):
    model, tokenizer = tiny_causal_lm
    return run_selection(model, tokenizer, dataset, SelectionConfig(selector=selector, mode=mode, batch=6, keep=2,
                                                                     seed=seed),
                         TrainConfig(**{**TRAIN, **train}), model_name="tiny-random")


@pytest.fixture(scope="module")
def uds_log(tiny_causal_lm, bundled_uds_dataset):
    return _run(tiny_causal_lm, bundled_uds_dataset)


def test_one_record_per_candidate_and_consistent_fields(uds_log):
    frame = uds_log.candidates_frame()
    assert len(frame) == 3 * 6 and len(uds_log.steps) == 3
    for _, group in frame.groupby("step"):
        assert group["selected"].sum() == 2 and sorted(group["rank"]) == list(range(6))
        assert (group.loc[group["selected"], "margin_to_kth"] >= 0).all()
        assert (group.loc[~group["selected"], "margin_to_kth"] <= 0).all()
    np.testing.assert_allclose(frame["total"], frame["s_intra"] + frame["alpha_s_inter"])
    assert (frame.loc[frame["step"] == 0, "s_inter"] == 0).all() and (frame.loc[frame["step"] > 0, "s_inter"] > 0).all()
    assert (frame["n_rows"] == frame["length"]).all()  # default mode: padding rows masked
    assert uds_log.buffer_at(2).embeddings.shape == (6, 1024) and uds_log.snapshot_steps() == [0, 2]
    assert len(uds_log.strips) == 2 * 6 and uds_log.strip(2, 0) is None
    assert uds_log.eval_summary.n_items == 4 and uds_log.config["status"] == "completed"
    assert {s.split for s in uds_log.samples} == {"train", "heldout"}


def test_same_seed_same_log_and_file_round_trip(uds_log, tiny_causal_lm, bundled_uds_dataset, tmp_path):
    again = _run(tiny_causal_lm, bundled_uds_dataset)
    assert again.selected_ids() == uds_log.selected_ids()
    assert again.candidates_frame().equals(uds_log.candidates_frame())
    save_runlog(uds_log, tmp_path / "log")
    assert load_runlog(tmp_path / "log").equals(uds_log)


def test_selectors_see_the_same_candidates_and_pick_by_their_rule(uds_log, tiny_causal_lm, bundled_uds_dataset):
    frames = {"uds": uds_log.candidates_frame()}
    for name in ("random", "maxloss", "full"):
        frames[name] = _run(tiny_causal_lm, bundled_uds_dataset, selector=name, eval_items=0).candidates_frame()
    step0 = {name: f[f["step"] == 0] for name, f in frames.items()}
    assert all(list(f["sample_id"]) == list(step0["uds"]["sample_id"]) for f in step0.values())
    assert step0["full"]["selected"].all()
    maxloss = step0["maxloss"]
    assert set(maxloss.loc[maxloss["selected"], "loss"]) == set(maxloss["loss"].nlargest(2))
    assert (frames["random"]["selector_score"] != frames["random"]["total"]).all()


def test_as_released_scores_padding_rows(tiny_causal_lm, bundled_uds_dataset):
    frame = _run(tiny_causal_lm, bundled_uds_dataset, mode="as_released", steps=1, eval_items=0).candidates_frame()
    assert (frame["n_rows"] == -(-frame["length"].max() // 8) * 8).all()  # left-padded to a multiple of 8


def test_cancel_and_progress(tiny_causal_lm, bundled_uds_dataset):
    model, tokenizer = tiny_causal_lm
    calls = []
    log = run_selection(model, tokenizer, bundled_uds_dataset, SelectionConfig(batch=4, keep=1),
                        TrainConfig(**{**TRAIN, "steps": 5}), progress=lambda d, t, m: calls.append((d, t)),
                        should_stop=lambda: len(calls) >= 2)
    assert log.config["status"] == "cancelled" and len(log.steps) == 2 and calls == [(1, 5), (2, 5)]
    assert log.eval_summary is None and len(log.samples) == 2 * 4


@pytest.mark.parametrize("lora", [True, False])
def test_base_model_untouched_and_weights_trained(tiny_causal_lm, bundled_uds_dataset, lora):
    model, _ = tiny_causal_lm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = _run(tiny_causal_lm, bundled_uds_dataset, steps=2, eval_items=0, lora=lora, lr=1e-2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert np.isfinite(log.steps_frame()["train_loss"]).all()


def test_cli_prints_json_summary_and_writes_log(tmp_path, capsys):
    rc = main(["select", "--model", "tiny-random", "--steps", "2", "--batch", "4", "--keep", "1", "--cutoff", "96",
               "--eval-items", "2", "--json", "--out", str(tmp_path / "run")])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["selector"] == "uds" and summary["steps"] == 2
    assert [len(ids) for ids in summary["selected_ids"]] == [1, 1] and len(summary["train_loss"]) == 2
    assert summary["eval_loss"] is not None
    assert load_runlog(tmp_path / "run").selected_ids() == summary["selected_ids"]


def test_cli_bad_input_is_one_line_and_exit_2(capsys):
    assert main(["select", "--batch", "4", "--keep", "5", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "keep=5" in err and "allowed" in err
    assert main(["select", "--alpha", "-0.1"]) == 2
    assert "alpha=-0.1" in capsys.readouterr().err
