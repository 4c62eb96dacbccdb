"""UDSTrainer in a user's own script: the README example on a tiny model, the loss it backpropagates, and one clear
message for every setting that cannot work, before any training starts."""
import copy
import re
from pathlib import Path

import pytest
import torch
from transformers import TrainingArguments

from engine.uds import SelectionConfig, UDSTrainer
from engine.uds.batching import as_item, encode, response_loss
from engine.uds.config import TrainConfig, check_together
from engine.uds.presets import PRESETS, resolve
from engine.uds.runlog_io import load_runlog

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- uds-trainer-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its UDSTrainer example"
    return match.group(1)


def test_readme_example_runs_and_writes_a_run_log(tiny_causal_lm, bundled_uds_dataset, tmp_path, monkeypatch):
    base, tokenizer = tiny_causal_lm
    before = {k: v.clone() for k, v in base.state_dict().items()}
    rows = [{"prompt": s.prompt[:40], "response": s.response[:40], "topic": s.category}  # short: byte tokens
            for s in bundled_uds_dataset.train[:128]]  # 16 micro-batches of 8: 4 optimizer steps per epoch
    monkeypatch.chdir(tmp_path)
    scope = {"model": copy.deepcopy(base), "tokenizer": tokenizer, "rows": rows}
    exec(compile(_readme_example(), "README.md", "exec"), scope)
    log = scope["log"]
    steps = log.steps_frame()
    assert len(steps) == 10 * 4 and steps["optimizer_step"].tolist() == [i // 4 for i in range(40)]
    assert (steps["n_kept"] == 1).all() and steps["train_loss"].notna().all()
    assert steps["learning_rate"].iloc[0] < steps["learning_rate"].max()  # one warm-up step, then linear decay
    assert steps["learning_rate"].iloc[-1] < steps["learning_rate"].max()
    saved = load_runlog(tmp_path / "runs" / "my-uds")
    assert saved.selected_ids() == log.selected_ids() and saved.config["status"] == "completed"
    assert set(saved.candidates_frame()["category"]) <= {r["topic"] for r in rows}
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # the example trained a copy


def _items(tokenizer, dataset, n, cutoff=48):
    return [as_item(e) for e in (encode(tokenizer, s, cutoff) for s in dataset.train[:n]) if len(e.ids) > e.prompt_len]


def _args(tmp_path, **overrides):
    values = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=2,
                  max_steps=1, learning_rate=0.5, optim="sgd", max_grad_norm=0.0, lr_scheduler_type="constant",
                  use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True)
    return TrainingArguments(**{**values, **overrides})


@pytest.mark.parametrize("reduction", ["token_mean", "per_sample"])
def test_one_step_applies_the_mean_gradient_over_everything_the_step_kept(tiny_causal_lm, bundled_uds_dataset,
                                                                            tmp_path, reduction):
    """Full keeps all 4 of each micro-batch; with SGD one optimizer step moves the weights by lr x the gradient of the
    mean loss over both micro-batches: token mean over all 8 samples' tokens, or the mean of their 8 sample means."""
    base, tokenizer = tiny_causal_lm
    items = _items(tokenizer, bundled_uds_dataset, 40)
    model = copy.deepcopy(base).train()
    trainer = UDSTrainer(model, _args(tmp_path, train_sampling_strategy="sequential"), items,
                         SelectionConfig(selector="full", batch=4), reduction, processing_class=tokenizer)
    reference = copy.deepcopy(base).train()
    trainer.train()
    features = [trainer.data_collator([{**items[i], "uds_index": i} for i in range(j, j + 4)]) for j in (0, 4)]
    sums, counts = [], []
    for f in features:
        loss_sum, count = response_loss(reference(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits,
                                        f["labels"])
        sums.append(loss_sum)
        counts.append(count)
    loss_sum, count = torch.cat(sums), torch.cat(counts)
    loss = (loss_sum / count).mean() if reduction == "per_sample" else loss_sum.sum() / count.sum()
    loss.backward()
    with torch.no_grad():
        for (name, trained), (_, ref) in zip(model.named_parameters(), reference.named_parameters()):
            torch.testing.assert_close(trained, ref - 0.5 * ref.grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("settings, message", [
    (dict(batch=4, keep=5), "keep=5 is out of range; allowed: in \\[1, 4\\]"),
    (dict(grad_accumulation=0), "grad_accumulation=0 is out of range"),
    (dict(preset="paper", alpha=2e-3), "alpha=0.002 contradicts preset 'paper', which sets alpha=0.0015"),
    (dict(preset="released-script", keep=2), "keep=2 contradicts preset 'released-script'"),
    (dict(preset="fast"), "preset='fast' is unknown"),
])
def test_settings_that_cannot_work_are_refused_by_name(settings, message):
    preset = settings.pop("preset", None)
    with pytest.raises(ValueError, match=message):
        resolve(preset, settings)


def test_a_preset_and_equal_values_agree_and_every_value_is_a_field():
    selection, train = resolve("released-script", {"keep": 1, "selector": "random", "mode": "as_released"})
    assert (selection.batch, selection.keep, selection.alpha, train.grad_accumulation, train.lr) == (4, 1, 1.5e-3, 32,
                                                                                                      1.5e-4)
    assert (selection.padding_side, selection.pad_to_multiple_of) == ("left", 8)
    assert resolve("paper", {})[0].batch == 8 and set(PRESETS["paper"]) == set(PRESETS["released-script"])
    with pytest.raises(ValueError, match="cutoff=512 exceeds the sketch time_length=256"):
        check_together(SelectionConfig(time_length=256), TrainConfig(cutoff=512))


def test_trainer_refuses_what_cannot_run_before_training(tiny_causal_lm, bundled_uds_dataset, tmp_path):
    base, tokenizer = tiny_causal_lm
    items = _items(tokenizer, bundled_uds_dataset, 12)
    cases = [(dict(per_device_train_batch_size=6), SelectionConfig(batch=4), "per_device_train_batch_size=6 is not a "
              "multiple of the selection batch B=4"),
             (dict(gradient_accumulation_steps=0), SelectionConfig(batch=4), "gradient_accumulation_steps=0"),
             (dict(per_device_train_batch_size=16), SelectionConfig(batch=8), "1 process x 16 candidates need 16 "
              "samples, but the dataset has 9")]
    for overrides, selection, message in cases:
        with pytest.raises(ValueError, match=message):
            UDSTrainer(copy.deepcopy(base), _args(tmp_path, **overrides), items, selection, processing_class=tokenizer)
    with pytest.raises(ValueError, match="loss_reduction='sum' is unknown"):
        UDSTrainer(copy.deepcopy(base), _args(tmp_path), items, SelectionConfig(batch=4), "sum",
                   processing_class=tokenizer)


def test_default_mode_refuses_left_padded_candidates(tiny_causal_lm, bundled_uds_dataset, tmp_path):
    base, tokenizer = tiny_causal_lm
    items = _items(tokenizer, bundled_uds_dataset, 12)

    def left_padded(features):
        from engine.uds.batching import pad_items
        return pad_items(features, tokenizer.pad_token_id, "left")

    trainer = UDSTrainer(copy.deepcopy(base), _args(tmp_path), items, SelectionConfig(batch=4),
                         processing_class=tokenizer, data_collator=left_padded)
    with pytest.raises(ValueError, match="default scoring mode needs right-padded candidates"):
        trainer.train()
