"""lab/benchmarks/gpu_cache.py --smoke: every cache mode, the batches, the end-to-end pair and LLaDA2's block cache
run on the CPU through the same code a GPU run uses."""
from tests.conftest import ROOT, smoke_json


def test_gpu_cache_smoke_measures_every_mode(tmp_path):
    result = smoke_json("gpu_cache.py", tmp_path / "cache.json")
    dense = result["llada_8b_shape"]
    assert dense["shape"] == {"batch": 1, "prompt": 8, "gen_length": 32, "block_length": 16}
    floors = {}
    for mode in ("none", "prefix", "dual"):
        entry = dense["modes"][mode]
        assert entry["batch1"]["trace_on"]["nfe"] == entry["batch1"]["trace_off"]["nfe"] == 32  # random weights
        floors[mode] = entry["batch1"]["floor"]["mean_rows"]
        for batch in ("batch2", "batch3"):
            assert entry[batch]["nfe"] == 8 and entry[batch]["tokens_per_s"] > 0
    assert floors["dual"] < floors["prefix"] < floors["none"] == 40  # rows a step runs: block < suffix < canvas
    assert dense["end_to_end"]["fixed_steps_no_cache"]["nfe"] == 32
    moe = result["llada2_mini"]
    eager = moe["block_cache_eager"]  # CPU: eager only (the GPU run adds the graphed decode and compares tokens)
    assert eager["nfe"] == 32 and eager["extra_forwards"] == 1 and "block_cache" not in moe  # the prompt, kept once
    assert moe["floor"]["floor_ms"] > 0 and "error" not in result["ceilings"]


def test_gpu_cache_smoke_measures_the_split_projections_beside_the_stacked(tmp_path):
    dense = smoke_json("gpu_cache.py", tmp_path / "cache.json", "--quick", "--split")["llada_8b_shape"]
    assert dense["versions"] == {"modes": {"compiled": False, "stacked": True},
                                 "modes_split": {"compiled": False, "stacked": False}}  # CPU: nothing compiled
    for key in dense["versions"]:
        for mode in ("none", "prefix", "dual"):
            assert dense[key][mode]["batch1"]["trace_on"]["nfe"] == 32
    assert dense["end_to_end"]["fixed_steps_no_cache"]["nfe"] == 32


def test_gpu_cache_profile_smoke_profiles_every_mode(tmp_path):
    modes = smoke_json("gpu_cache_profile.py", tmp_path / "profile.json")["versions"]["eager"]
    for mode in ("none", "prefix", "dual"):
        entry = modes[mode]
        assert entry["nfe"] == 32 and len(entry["steps"]) == 3 and entry["refresh_step"]["wall_ms"] > 0
        assert entry["trace_check"]["topk_first_prob_vs_raw_prob_max_diff"] < 1e-5
        assert entry["forward_back_to_back_ms"] is None  # CUDA events only


def test_idle_gaps_split_a_graphs_latency_from_waiting_for_the_host():
    import sys

    sys.path.insert(0, str(ROOT / "lab" / "benchmarks"))
    from gpu_cache_profile import idle_gaps

    spans = [(0.0, 5.0), (2.0, 6.0), (7.5, 9.0), (60.0, 70.0), (71.0, 72.0)]  # us; the first two overlap
    gaps = idle_gaps(spans)
    assert gaps["short_count"] == 2 and abs(gaps["short_ms"] - 0.0025) < 1e-12  # 1.5 + 1.0 us
    assert gaps["largest_us"] == [51.0, 1.5, 1.0] and abs(gaps["long_ms"] - 0.051) < 1e-12


def test_gpu_app_cache_smoke_reuses_the_kept_forward_and_decodes_alike(tmp_path):
    modes = smoke_json("gpu_app_cache.py", tmp_path / "app.json")["modes"]
    for mode in ("prefix", "dual"):
        assert modes[mode]["reused_forward"] and modes[mode]["same_tokens"] and modes[mode]["again_s"] > 0


def test_gpu_gemm_probe_smoke_covers_every_layer_shape(tmp_path):
    probe = smoke_json("gpu_gemm_probe.py", tmp_path / "probe.json")
    shapes = {(row["shape"], row["rows"]) for row in probe["linear"]}
    assert len(shapes) == 12 and {name for name, _ in shapes} >= {"qkv stacked", "gate+up stacked", "down", "head"}
    assert [row["queries"] for row in probe["attention"]] == [8, 24]  # the smoke sizes of 32 and 288 queries
