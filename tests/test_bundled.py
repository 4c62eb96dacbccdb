"""The bundled dLLM's recipe on the tiny model (real forwards, real package data) and the loader's bad-input paths."""
import copy
import json
from dataclasses import replace

import pytest
import torch

from engine.bench.metrics import answer_correct, is_degenerate
from engine.data.prompts import HELDOUT_ADDITION, TRAIN_ADDITION
from engine.models.adapter import merge_adapter
from engine.models.bundled import FORMAT, load_bundled, read_weights
from lab.bundled import data
from lab.bundled.config import RecipeConfig, smoke_config
from lab.bundled.lora import LoRALinear, adapter_state, add_lora
from lab.bundled.train import Tokenised, diffusion_loss, tokenise


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from lab.bundled.recipe import run_recipe

    out = tmp_path_factory.mktemp("bundled_smoke")
    return out, run_recipe(smoke_config(), out, device="cpu", workers=1, log=lambda line: None)


def test_smoke_recipe_writes_weights_log_and_table(smoke_run) -> None:
    out, result = smoke_run
    tensors, metadata = read_weights(out / "smollm2-dllm.safetensors")
    assert metadata["format"] == FORMAT and metadata["gguf_sha256"] == "tiny-random"
    assert all(t.dtype == torch.bfloat16 for t in tensors.values())
    assert any(key.endswith("q_proj.lora_A") for key in tensors) and "mask_embedding" in tensors
    losses = [r["loss"] for r in result["train_log"]]
    assert len(losses) == smoke_config().max_steps and all(torch.isfinite(torch.tensor(losses)))
    sets = {"single_digit_addition", "add_or_sub_easy", "add_or_sub_interpolate", "chat"}
    assert {row["set"] for row in result["eval"]} == sets
    assert len(result["eval"]) == len(sets) * len(smoke_config().eval_gen_lengths) * 4
    assert json.loads((out / "recipe_log.json").read_text())["eval"] == result["eval"]
    assert (out / "eval_table.md").read_text().count("\n") == len(result["eval"]) + 2


def test_smoke_recipe_rows_are_sane(smoke_run) -> None:
    _, result = smoke_run
    for row in result["eval"]:
        assert 0.0 <= row["eos_share"] <= 1.0 and 0.0 <= row["degenerate_share"] <= 1.0
        if row["decoder"] == "fixed_steps":  # one commit per step: NFE is the positions decoded
            assert 1 <= row["mean_nfe"] <= row["gen_length"]


def test_heldout_sets_never_meet_training() -> None:
    config = replace(smoke_config(), eval_per_set=30, chat_heldout=30)
    train_prompts = {e.prompt for e in data.ground_truth_examples(config)} | {
        e.prompt for e in data.teacher_prompts(replace(config, teacher_prompt_cap=0))}
    sets = data.heldout_sets(config, train_prompts)
    assert all(e.prompt not in train_prompts for examples in sets.values() for e in examples)
    assert not set(TRAIN_ADDITION) & set(HELDOUT_ADDITION)
    with pytest.raises(ValueError, match="shares"):
        data.heldout_sets(config, {sets["chat"][0].prompt})


def test_data_building_is_seeded() -> None:
    config = smoke_config()
    assert data.ground_truth_examples(config) == data.ground_truth_examples(config)
    assert data.arithmetic_examples(config) != data.arithmetic_examples(replace(config, seed=1))


def test_tokenise_pads_answers_with_eos_to_a_slot(tiny_model) -> None:
    config = smoke_config()
    eos = tiny_model.spec.eos_id
    kept, dropped = tokenise([data.Example("What is 2 + 2?", "4", "addition"),
                              data.Example("long", "x" * 100, "chat")], tiny_model.tokenizer, config, eos)
    assert dropped["answer_too_long"] == 1 and len(kept) == 1
    assert len(kept[0].slot) in config.slot_lengths and kept[0].slot[-1] == eos
    assert list(kept[0].slot).index(eos) == 1  # "4" is one byte token, then EOS padding


def _student(tiny_model, rank: int = 4):
    model = copy.deepcopy(tiny_model.model).float()
    trainable = add_lora(model, rank, 2.0 * rank, tiny_model.spec.mask_id, seed=0)
    return model, trainable


def test_training_moves_only_adapters_norms_and_the_mask_row(tiny_model) -> None:
    model, trainable = _student(tiny_model)
    embedding_before = model.get_input_embeddings().weight.detach().clone()
    base_before = model.model.layers[0].self_attn.q_proj.base.weight.detach().clone()
    batch = [Tokenised(tuple(range(5, 12)), (20, 21, 22) + (tiny_model.spec.eos_id,) * 5, "t")] * 3
    loss = diffusion_loss(model, batch, tiny_model.spec.mask_id, True, 0.02, torch.Generator().manual_seed(0),
                          torch.device("cpu"))
    loss.backward()
    torch.optim.SGD(trainable, lr=1.0).step()
    changed = (model.get_input_embeddings().weight - embedding_before).abs().sum(dim=1) > 0
    assert changed.nonzero().flatten().tolist() == [tiny_model.spec.mask_id]
    assert torch.equal(model.model.layers[0].self_attn.q_proj.base.weight, base_before)
    assert model.model.layers[0].self_attn.q_proj.lora_B.abs().sum() > 0


def test_loss_depends_on_the_answer_only_through_masked_positions(tiny_model) -> None:
    # With every answer position masked (t = 1), the input holds no answer token: two different answers then give
    # the loss of their own targets, and the same answer under another prompt gives another loss.
    model, _ = _student(tiny_model)
    eos, mask = tiny_model.spec.eos_id, tiny_model.spec.mask_id
    loss = lambda prompt, slot: float(diffusion_loss(  # noqa: E731
        model, [Tokenised(prompt, slot, "t")], mask, True, 0.999, torch.Generator().manual_seed(0),
        torch.device("cpu")).detach())
    prompt = tuple(range(5, 12))
    first, second = (20, 21, 22, 23) + (eos,) * 4, (30, 31, 32, 33) + (eos,) * 4
    assert loss(prompt, first) > 0 and loss(prompt, first) != loss(prompt, second)
    assert loss(prompt, first) != loss(tuple(range(40, 47)), first)


def test_saved_adapter_merges_to_the_live_model(tiny_model) -> None:
    model, _ = _student(tiny_model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.normal_(0, 0.05)
    state = adapter_state(model, tiny_model.spec.mask_id)
    merged = merge_adapter(copy.deepcopy(tiny_model.model).float(), state, 2.0, tiny_model.spec.mask_id)
    ids = torch.randint(4, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the live model still runs its adapters beside the base weights
        assert torch.allclose(merged(input_ids=ids).logits, model(input_ids=ids).logits, atol=5e-2)


def test_merge_rejects_a_file_for_another_model(tiny_model) -> None:
    with pytest.raises(ValueError, match="lacks"):
        merge_adapter(copy.deepcopy(tiny_model.model), {}, 1.0, tiny_model.spec.mask_id)


def test_missing_weights_say_how_to_restore(tmp_path) -> None:
    with pytest.raises(ValueError, match="missing.*git checkout assets/bundled"):
        load_bundled("cpu", weights=tmp_path / "absent.safetensors")


def test_corrupt_weights_say_so(tmp_path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="corrupt"):
        load_bundled("cpu", weights=bad)


def test_weights_for_another_gguf_are_refused(smoke_run) -> None:
    out, _ = smoke_run
    with pytest.raises(ValueError, match="trained on tiny-random"):
        load_bundled("cpu", weights=out / "smollm2-dllm.safetensors")


@pytest.mark.parametrize("answer, target, expected", [
    ("8", "8", True), ("3 + 5 = 8.", "8", True), ("The answer is 8", "8", True), ("18", "8", False),
    ("-65.9159", "-65.9159", True), ("2/9", "2/9", True), ("True", "True", True), ("a", "b", False), ("", "8", False),
])
def test_answer_correct(answer: str, target: str, expected: bool) -> None:
    assert answer_correct(answer, target) is expected


def test_degenerate_repetition() -> None:
    assert is_degenerate("Paris is the capital. Paris is the capital. Paris is the capital. Paris is the capital.")
    assert is_degenerate("yes yes yes yes")
    assert not is_degenerate("The capital of France is Paris, a city on the Seine.")
    assert not is_degenerate("8")


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="min_mask_ratio"):
        RecipeConfig(min_mask_ratio=0.0)
    with pytest.raises(ValueError, match="eval_block_length"):
        RecipeConfig(eval_gen_lengths=(48,), eval_block_length=32)


def test_bundled_model_spec_comes_from_the_tokenizer(bundled_model) -> None:
    tokenizer, spec = bundled_model.tokenizer, bundled_model.spec
    assert spec.mask_id == tokenizer.convert_tokens_to_ids("<empty_output>")
    assert spec.eos_id == tokenizer.eos_token_id and spec.shift is True


def test_bundled_model_is_bidirectional(bundled_model) -> None:
    ids = bundled_model.encode_prompt("What is 3 + 4?")
    changed = ids.clone()
    changed[0, -1] = bundled_model.spec.mask_id
    early = slice(0, ids.shape[1] - 1)
    assert not torch.allclose(bundled_model(ids)[0, early], bundled_model(changed)[0, early])


@pytest.mark.parametrize("rule", ["low_confidence", "credit:paper"])
def test_bundled_model_adds_single_digits(bundled_model, rule) -> None:
    from engine.decoding import generate
    from lab.bundled.evaluate import make_rule

    spec = bundled_model.spec
    answers = []
    for question in ("What is 3 + 4?", "What is 2 + 6?"):
        # A 64-token canvas (as trained) in blocks of 8: the answer and its EOS sit in the first block, so early
        # stop ends the decode after at most 8 forwards.
        result = generate(bundled_model, bundled_model.encode_prompt(question), make_rule(rule, 64), gen_length=64,
                          block_length=8, mask_id=spec.mask_id, eos_id=spec.eos_id, shift=spec.shift,
                          record_trace=False)
        answers.append(bundled_model.decode_answer(result.tokens[0]).strip())
    assert answers == ["7", "8"]
