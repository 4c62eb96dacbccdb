"""Hugging Face Space entry point: build the demo, launch it."""
import threading

from app.decoding_runs import warm_default_model
from app.main import build_demo, launch
from app.space import ensure_no_deps_packages
from engine.threads import configure_threads

ensure_no_deps_packages()  # a Space installs requirements.txt only; see requirements-nodeps.txt
demo = build_demo()

if __name__ == "__main__":
    configure_threads()  # torch threads for a small CPU Space; DLLM_TORCH_THREADS changes it (engine/threads.py)
    threading.Thread(target=warm_default_model, name="warm-model", daemon=True).start()  # first click won't wait
    launch(demo)
