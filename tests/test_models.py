"""Model adapters: the bundled architecture is bidirectional, the Hub allowlist holds, remote code loads locally."""
import json

import pytest
import torch

from engine.models import load_model
from engine.models.hub import HUB_MODELS, load_hub
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
    with pytest.raises(ValueError, match="not on the allowlist"):
        load_hub("someone/evil-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1"):
        load_hub("GSAI-ML/LLaDA-8B-Instruct")
    with pytest.raises(ValueError, match="unknown"):
        load_model("not-a-model")


REMOTE_CODE = '''
import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

class ToyDLLMConfig(PretrainedConfig):
    model_type = "toy_dllm"
    def __init__(self, vocab_size=300, hidden=16, **kw):
        self.vocab_size, self.hidden = vocab_size, hidden
        super().__init__(**kw)

class ToyDLLM(PreTrainedModel):
    config_class = ToyDLLMConfig
    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden)
        self.head = torch.nn.Linear(config.hidden, config.vocab_size)
        self.post_init()
    def forward(self, input_ids=None, **kw):
        h = self.embed(input_ids)
        return CausalLMOutput(logits=self.head(h + h.mean(1, keepdim=True)))
'''


def test_hub_adapter_runs_remote_code_from_a_local_copy(tmp_path, tiny_model):
    """The real trust_remote_code path (config auto_map -> a modeling file), offline, on a folder we build."""
    (tmp_path / "modeling_toy.py").write_text(REMOTE_CODE)
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        from modeling_toy import ToyDLLM, ToyDLLMConfig
        torch.manual_seed(0)
        ToyDLLM(ToyDLLMConfig()).save_pretrained(tmp_path)
    finally:
        sys.path.remove(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "modeling_toy.ToyDLLMConfig", "AutoModel": "modeling_toy.ToyDLLM"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    tiny_model.tokenizer.save_pretrained(tmp_path)
    model = load_hub("Dream-org/Dream-v0-Instruct-7B", source=tmp_path, device="cpu")
    assert model.spec.shift and model.spec.mask_id == HUB_MODELS["Dream-org/Dream-v0-Instruct-7B"].mask_id
    logits = model(torch.tensor([[1, 2, 3]]))
    assert logits.shape == (1, 3, 300) and logits.dtype == torch.float32


def test_prompt_longer_than_context_is_refused(tiny_model):
    with pytest.raises(ValueError, match="exceeds the model's context of 2048"):
        decode(tiny_model, DecodeRequest(prompt="word " * 399, gen_length=1024))  # 1995 bytes + 1024 > 2048


def test_decode_attaches_token_text_and_meta(tiny_model):
    outcome = decode(tiny_model, DecodeRequest(prompt="hi", strategy="threshold", gen_length=32, block_length=16))
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
        DecodeRequest(prompt="hi", strategy="credit_low_confidence", preset="parameter_free")
