"""Load: 8 concurrent gradio_client sessions decode different prompts with the bundled model on this CPU. Every session
gets its own prompt's answer and trace (checked against a direct engine decode), none errors, memory stays bounded."""
import concurrent.futures
import resource

from gradio_client import Client

from engine.decoding import Trace
from engine.models.cache import shared_dllm
from engine.pipeline import DecodeRequest, decode

PROMPTS = [f"What is {a} + {b}?" for a, b in [(1, 2), (3, 4), (5, 1), (2, 6), (7, 2), (4, 4), (9, 0), (3, 5)]]
SETTINGS = dict(model="bundled", rule="threshold", gen_length=32, block_length=16)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_eight_concurrent_sessions_get_their_own_answers(app_url):
    def run(prompt):
        return Client(app_url, verbose=False).predict(prompt=prompt, api_name="/decode", **SETTINGS)

    run(PROMPTS[0])  # the model is loaded once, before the crowd arrives
    before = peak_rss_mb()
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        payloads = list(pool.map(run, PROMPTS))
    grown = peak_rss_mb() - before

    model = shared_dllm("bundled")  # the same cached model the server uses (same process)
    for prompt, payload in zip(PROMPTS, payloads):
        trace = Trace.from_dict(payload["trace"])
        assert trace.meta["prompt"] == prompt
        expected = decode(model, DecodeRequest(prompt=prompt, rule="threshold", gen_length=32, block_length=16))
        assert payload["answer"] == expected.answer and payload["nfe"] == expected.result.nfe
    assert len({p["answer"] for p in payloads}) > 1, "different sums must not all get one answer"
    assert grown < 1024, f"peak memory grew by {grown:.0f} MB under 8 concurrent sessions"
