"""Temporary files go away (issue 16, item 7): a session's folders when it ends, old folders on the janitor's timer,
the oldest past a disk cap; Gradio's cache is aged out too; numba's cache goes to a writable temp folder."""
import os
import subprocess
import sys
import time
from pathlib import Path

import gradio as gr
import pytest

from app import decoding_panels as views
from app import selection_handlers as h
from app import session_files
from app.main import build_demo


def fill(folder: Path, megabytes: float, age_seconds: float = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.bin").write_bytes(b"\0" * int(megabytes * 2**20))
    stamp = time.time() - age_seconds
    os.utime(folder, (stamp, stamp))
    return folder


def test_a_closed_page_takes_its_folders_with_it(tiny_decodes):
    path = Path(views.export_trace(tiny_decodes["credit"].trace, "closing-session"))
    assert path.is_file() and path.parent.parent == session_files.root()
    session_files.end_session(gr.Request(session_hash="closing-session"))  # what demo.unload calls
    assert not path.parent.exists()
    state, folder = h.session_folder(h.new_state())
    (folder / "selected.jsonl").write_text("{}")
    h.drop_state(state)  # what gr.State's delete_callback calls when the session is deleted
    assert not folder.exists()
    session_files.remove_folder("/etc")  # never outside the root
    assert Path("/etc").is_dir()


def test_the_sweep_removes_old_folders_then_the_oldest_past_the_cap(tmp_path):
    stale = fill(tmp_path / "stale", 0.1, age_seconds=7 * 3600)
    old, mid, new = (fill(tmp_path / name, 1, age_seconds=age) for name, age in (("old", 300), ("mid", 200),
                                                                               ("new", 100)))
    removed = session_files.sweep(tmp_path.iterdir(), max_bytes=int(2.5 * 2**20),
                                  max_age_seconds=session_files.MAX_AGE_SECONDS)
    assert sorted(p.name for p in removed) == ["old", "stale"] and mid.exists() and new.exists()
    kept = session_files.sweep(tmp_path.iterdir(), max_bytes=0, keep=[new])
    assert kept == [mid] and new.exists()


def test_make_room_refuses_when_the_session_alone_fills_the_cap():
    state, folder = h.session_folder(h.new_state())
    fill(folder, 1)
    with pytest.raises(gr.Error, match="temporary space is full"):
        session_files.make_room(folder, max_bytes=2**19)
    assert folder.exists()
    h.drop_state(state)


def test_the_demo_ages_out_gradios_cache_and_cleans_up_on_unload():
    demo = build_demo()
    assert demo.delete_cache == (session_files.SWEEP_SECONDS, session_files.MAX_AGE_SECONDS)
    assert any(getattr(fn.fn, "__name__", "") == "end_session" for fn in demo.fns.values())


def test_numba_caches_into_a_writable_temp_folder(tmp_path):
    script = ("import os; from analysis.projection import use_writable_numba_cache; folder = "
              "use_writable_numba_cache(); import numba\n"
              "@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n"
              "assert twice(21) == 42; print(folder); print(numba.config.CACHE_DIR)")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(TMPDIR=str(tmp_path), PYTHONPATH=str(Path(__file__).parents[1]))
    module = tmp_path / "cached.py"
    module.write_text(script)
    out = subprocess.run([sys.executable, str(module)], capture_output=True, text=True, env=env, timeout=300,
                         cwd=Path(__file__).parents[1], check=True).stdout.split()
    assert out[0] == out[1] == str(tmp_path / "dllm-numba-cache")
    assert any(p.suffix == ".nbi" for p in (tmp_path / "dllm-numba-cache").rglob("*"))
