"""Hugging Face Space entry point: build the demo, launch it."""
from app.main import build_demo, launch
from app.space import ensure_no_deps_packages

ensure_no_deps_packages()  # a Space installs requirements.txt only; see requirements-nodeps.txt
demo = build_demo()

if __name__ == "__main__":
    launch(demo)
