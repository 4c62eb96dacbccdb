"""Shared, session-scoped fixtures (expensive things are built once per test run)."""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


class ToyModel:
    """A seeded toy dLLM: logits depend on every position (bidirectional) through a random bilinear mix."""

    def __init__(self, vocab: int = 40, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.vocab = vocab
        self.embed = torch.randn(vocab, 16, generator=g)
        self.out = torch.randn(16, vocab, generator=g) * 2.0
        self.calls = 0

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = self.embed[ids]  # (B, L, 16)
        context = h.mean(dim=1, keepdim=True)  # (B, 1, 16): every position sees the whole sequence
        position = torch.arange(ids.shape[1], dtype=torch.float32)[None, :, None] / ids.shape[1]
        return (h + context + position) @ self.out  # (B, L, V)


@pytest.fixture
def toy_model() -> ToyModel:
    return ToyModel()


@pytest.fixture(scope="session")
def tiny_model():
    """tiny-random through the real adapter (bidirectional Llama + byte tokenizer)."""
    from engine.models import load_model
    return load_model("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def tiny_decodes(tiny_model):
    """Decoding Explorer: one tiny-random decode per rule (gen 32, block 16, seed 0), as the app makes them:
    {strategy: DecodeOutcome} with self-contained traces (token strings included)."""
    from engine.decoding import STRATEGIES
    from engine.pipeline import DecodeRequest, decode
    return {name: decode(tiny_model, DecodeRequest(prompt="What is the capital of France?", strategy=name,
                                                   gen_length=32, block_length=16, steps=16 if "low" in name else None))
            for name in STRATEGIES}


@pytest.fixture(scope="session")
def app_url():
    """The whole demo served in this process on a free local port (as app.py serves it); closed after the run."""
    import socket

    from app.main import build_demo, launch
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = build_demo()
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
