"""Model adapters: the bundled architecture is bidirectional, only published Hub ids load (natively, no remote code)."""

import pytest
import torch

from engine.models import load_model
from engine.pipeline import DecodeRequest, decode


def test_tiny_architecture_is_bidirectional(tiny_model):
    ids = tiny_model.encode_prompt("The capital of France is")
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 200 + 4
    early = slice(0, ids.shape[1] - 1)
    assert not torch.allclose(tiny_model(ids)[0, early], tiny_model(changed)[0, early])


def test_causal_reference_would_not_change(tiny_model):
    # The same check on a causal copy fails, so the test above can tell the two apart.
    from transformers import LlamaForCausalLM
    causal = LlamaForCausalLM(tiny_model.model.config.__class__(**{**tiny_model.model.config.to_dict(),
                                                                   "is_causal": True})).eval()
    causal.load_state_dict(tiny_model.model.state_dict())
    for module in causal.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = True
    ids = tiny_model.encode_prompt("The capital of France is")
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 200 + 4
    with torch.no_grad():
        a, b = causal(ids).logits[0, :-1], causal(changed).logits[0, :-1]
    assert torch.allclose(a, b, atol=1e-5)


def test_unknown_and_offline_hub_models_fail_clearly(monkeypatch):
    with pytest.raises(ValueError, match="unknown for dllm"):
        load_model("someone/evil-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1"):
        load_model("GSAI-ML/LLaDA-8B-Instruct")
    with pytest.raises(ValueError, match="unknown"):
        load_model("not-a-model")


def test_prompt_longer_than_context_is_refused(tiny_model):
    with pytest.raises(ValueError, match="exceeds the model's context of 2048"):
        decode(tiny_model, DecodeRequest(prompt="word " * 399, gen_length=1024))  # 1995 bytes + 1024 > 2048


def test_decode_attaches_token_text_and_meta(tiny_model):
    outcome = decode(tiny_model, DecodeRequest(prompt="hi", rule="threshold", gen_length=32, block_length=16))
    trace = outcome.trace
    assert set(trace.ids_in_use().tolist()) <= set(trace.token_text)
    assert trace.meta["model"] == "tiny-random" and trace.meta["prompt"] == "hi"
    assert outcome.result.nfe == trace.meta["nfe"] and outcome.tokens_per_second > 0


def test_block_logits_equal_the_full_forwards_rows(tiny_model):
    ids = tiny_model.encode_prompt("What is 2 + 3?")
    full = tiny_model(ids)
    torch.testing.assert_close(tiny_model.block_logits(ids, 4, 12), full[:, 4:12], rtol=1e-5, atol=1e-5)


def test_parameter_free_preset_is_refused_for_credit_in_fixed_steps():
    with pytest.raises(ValueError, match="parameter_free"):
        DecodeRequest(prompt="hi", rule="credit_low_confidence", preset="parameter_free")
