"""Shared, session-scoped fixtures (expensive things are built once per test run)."""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from lab.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

ARTIFACTS = Path(__file__).parent / "artifacts"  # browser-test screenshots (ignored by git)
ROOT = Path(__file__).resolve().parents[1]


def smoke_json(script: str, out: Path, *args: str) -> dict:
    """Run lab/benchmarks/`script` with --smoke (its CPU path, the code a GPU run uses) writing `out`; its JSON."""
    subprocess.run([sys.executable, str(ROOT / "lab" / "benchmarks" / script), "--smoke", *args, "--out", str(out)],
                   check=True, cwd=ROOT, timeout=300, capture_output=True)
    return json.loads(out.read_text())


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
def smollm2_causal():
    """(model, tokenizer): the real causal SmolLM2-135M-Instruct from the GGUF, loaded once, shared read-only."""
    from engine.models.smollm import load_smollm
    return load_smollm("cpu")


@pytest.fixture(scope="session")
def tiny_causal_lm():
    """(model, tokenizer): a causal toy-width Llama with the byte tokenizer, for the Selection Lab loop tests."""
    from engine.models.tiny import tiny_causal
    return tiny_causal("cpu")


@pytest.fixture(scope="session")
def bundled_uds_dataset():
    """The Selection Lab's bundled mixture (chatterbot + mathematics-dataset + HumanEval) with its held-out split."""
    from engine.uds.data import bundled_dataset
    return bundled_dataset()


@pytest.fixture(scope="session")
def tiny_decodes(tiny_model):
    """Decoding Explorer: one tiny-random decode per rule (gen 32, block 16, seed 0), as the app makes them:
    {rule id: DecodeOutcome} with self-contained traces (token strings included)."""
    from engine.decoding import RULES
    from engine.pipeline import DecodeRequest, decode
    return {rule: decode(tiny_model, DecodeRequest(prompt="What is the capital of France?", rule=rule, gen_length=32,
                                                   block_length=16, steps=16 if entry.has("step_budget") else None))
            for rule, entry in RULES.items()}


@pytest.fixture(scope="session")
def uds_runlogs(tiny_causal_lm, bundled_uds_dataset):
    """Selection Lab: three short real runs (UDS, Random, Full) of the toy causal Llama on the bundled mixture,
    same seed: {selector: RunLog}. 12 steps of B = 8, K = 2, so the buffer map has enough points for UMAP."""
    from engine.uds.config import SelectionConfig, TrainConfig
    from engine.uds.run import run_selection
    model, tokenizer = tiny_causal_lm
    train = TrainConfig(steps=12, cutoff=128, eval_items=6, snapshot_every=4, seed=21)
    return {name: run_selection(model, tokenizer, bundled_uds_dataset, SelectionConfig(selector=name, batch=8, keep=2),
                                train, model_name="tiny-random")
            for name in ("uds", "random", "full")}


@pytest.fixture(scope="session")
def uds_buffer_map(uds_runlogs):
    """The UDS run's buffer map (UMAP, fitted once: the first fit in a process compiles for seconds)."""
    from analysis.buffer_map import build_buffer_map
    return build_buffer_map(uds_runlogs["uds"])


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


@pytest.fixture(scope="session")
def bundled_model():
    """The shipped bundled dLLM (GGUF base + assets/bundled adapter), loaded once on the CPU."""
    from engine.models import load_model
    return load_model("bundled", device="cpu")


@pytest.fixture(scope="session")
def chromium():
    """One headless Debian Chromium, driven by Playwright, shared by the browser tests of both tabs."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian chromium is missing: apt-get install -y chromium (make test does this)"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
