"""Cached forwards kept across the pipeline's decodes (engine/models/forward_pool.py): a later decode of the same cache
and canvas shape reuses the model's CachedForward and decodes exactly as a new one would; more shapes than
KEEP_FORWARDS drop the least recently used; two decodes at once never share one. On the CPU (no graphs) the reuse
logic is the one a GPU runs."""
import gc
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine.decoding import DecodeCancelled, StepObserver
from engine.decoding.cache import CacheConfig
from engine.models import load_model
from engine.models.forward_pool import KEEP_FORWARDS, ForwardPool
from engine.pipeline import DecodeOutcome, DecodeRequest, decode

PROMPTS = ("What is the capital of France?", "What is the capital of Norway?")  # one length: one canvas shape


@pytest.fixture
def model():
    """A fresh load each test: its pool starts empty, so its first decode of a shape runs a new CachedForward."""
    return load_model("tiny-random", device="cpu")


def request(prompt: str = PROMPTS[0], **knobs) -> DecodeRequest:
    return DecodeRequest(prompt=prompt, **{"gen_length": 32, "block_length": 16, "cache": "dual", **knobs})


def canvas(model, req: DecodeRequest) -> tuple[int, int]:
    return 1, model.encode_prompt(req.prompt).shape[1] + req.gen_length


def assert_same_decode(got: DecodeOutcome, want: DecodeOutcome) -> None:
    """Answer, meta, token strings and every trace array equal; only wall times may differ."""
    assert got.answer == want.answer
    assert {k: v for k, v in got.trace.meta.items() if k != "seconds"} == \
        {k: v for k, v in want.trace.meta.items() if k != "seconds"}
    assert got.trace.token_text == want.trace.token_text
    assert got.trace.arrays.keys() == want.trace.arrays.keys()
    for name, array in want.trace.arrays.items():
        if name != "step_seconds":
            np.testing.assert_array_equal(got.trace.arrays[name], array, err_msg=name)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_a_second_decode_reuses_the_forward_and_traces_as_the_first(model, mode):
    first = decode(model, request(cache=mode))  # the pool is empty: a new CachedForward
    (key, forward), = model.cached_forwards.kept().items()
    assert key == (CacheConfig(mode), canvas(model, request()))
    rows = list(forward.computed_rows)
    second = decode(model, request(cache=mode))
    (again, reused), = model.cached_forwards.kept().items()
    assert again == key and reused is forward
    assert reused.computed_rows == rows  # the second decode's rows alone: reset cleared the first's
    assert_same_decode(second, first)


def test_another_prompt_of_the_same_length_decodes_as_with_a_new_forward(model):
    decode(model, request(PROMPTS[0]))
    (forward,) = model.cached_forwards.kept().values()
    other = decode(model, request(PROMPTS[1]))
    (reused,) = model.cached_forwards.kept().values()
    assert reused is forward
    fresh = decode(load_model("tiny-random", device="cpu"), request(PROMPTS[1]))
    assert other.trace.meta["prompt"] == PROMPTS[1]
    assert_same_decode(other, fresh)


def test_more_shapes_than_kept_drop_the_least_recently_used(model):
    """Keys are (cache config, canvas): another gen_length and another refresh period are other forwards. A miss drops
    the least recently used before building, so a decode never holds more than KEEP_FORWARDS stores."""
    assert KEEP_FORWARDS == 2  # the steps below are written for two
    short, long_, refreshed = request(gen_length=32), request(gen_length=48), request(gen_length=32, refresh=2)
    keys = {r: (r.cache_config(), canvas(model, r)) for r in (short, long_, refreshed)}
    decode(model, short)
    decode(model, long_)
    dropped = weakref.ref(model.cached_forwards.kept()[keys[long_]])
    decode(model, short)  # short is the most recently used now
    assert list(model.cached_forwards.kept()) == [keys[long_], keys[short]]

    seen = []

    class Kept(StepObserver):
        def step(self, event):
            seen.append(list(model.cached_forwards.kept()))

    decode(model, refreshed, observers=[Kept()])
    assert seen[0] == [keys[short]]  # long_ was dropped before the new forward was built
    assert list(model.cached_forwards.kept()) == [keys[short], keys[refreshed]]
    gc.collect()
    assert dropped() is None  # nothing else holds the dropped forward: its store is freed


class Lockstep(StepObserver):
    """Two decodes take each of their first `steps` steps together, so each one's forwards run between the other's."""

    def __init__(self, barrier: threading.Barrier, steps: int, pool, out_during: list) -> None:
        self.barrier, self.steps, self.pool, self.out_during = barrier, steps, pool, out_during

    def step(self, event):
        if event.step < self.steps:
            self.barrier.wait()
            self.out_during.append(len(self.pool.kept()))


def test_two_decodes_at_once_never_share_a_forward(model):
    """A shared forward would mix the two prompts' keys in one store (a dual step reads the other's refresh): each
    decode equals the same decode alone on a freshly loaded model. Fixed steps: both first blocks have 16 steps."""
    reqs = [request(p, rule="low_confidence") for p in PROMPTS]
    reference = load_model("tiny-random", device="cpu")
    alone = [decode(reference, r) for r in reqs]
    decode(model, reqs[0])  # one forward kept for the shape: one decode takes it, the other builds its own
    barrier, out_during = threading.Barrier(2, timeout=60), []
    with ThreadPoolExecutor(2) as threads:
        jobs = [threads.submit(decode, model, r, [Lockstep(barrier, 16, model.cached_forwards, out_during)])
                for r in reqs]
        together = [job.result() for job in jobs]
    assert out_during and set(out_during) == {0}  # while both ran, both forwards were out of the pool
    for got, want in zip(together, alone):
        assert_same_decode(got, want)
    assert len(model.cached_forwards.kept()) == 1  # the second one back replaced the first: one per key


def test_a_cancelled_decode_keeps_its_forward_and_a_failed_one_drops_it(model):
    class StopAt(StepObserver):
        def __init__(self, error: Exception) -> None:
            self.error = error

        def step(self, event):
            if event.step == 3:
                raise self.error

    first = decode(model, request())
    (forward,) = model.cached_forwards.kept().values()
    with pytest.raises(DecodeCancelled):
        decode(model, request(), observers=[StopAt(DecodeCancelled("cancelled"))])
    (kept,) = model.cached_forwards.kept().values()
    assert kept is forward  # stopped between two steps: whole, and reset by the next decode
    assert_same_decode(decode(model, request()), first)
    with pytest.raises(RuntimeError, match="boom"):
        decode(model, request(), observers=[StopAt(RuntimeError("boom"))])
    assert model.cached_forwards.kept() == {}


def test_a_gpu_pool_frees_dropped_forwards_that_refer_to_themselves():
    """On a GPU a CachedForward and its GraphCache refer to each other: the pool collects after dropping one, so its
    store is freed before the next forward allocates (here with the collector otherwise off)."""
    class Cyclic:
        def __init__(self) -> None:
            self.me = self

    pool = ForwardPool(collect=True)
    gc.disable()
    try:
        with pool.take("first", Cyclic) as first:
            gone = weakref.ref(first)
        del first
        for key in ("second", "third"):  # the third is one more than KEEP_FORWARDS: the first is dropped
            with pool.take(key, Cyclic):
                pass
        assert list(pool.kept()) == ["second", "third"] and gone() is None
    finally:
        gc.enable()
