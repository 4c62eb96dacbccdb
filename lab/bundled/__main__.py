"""`python -m lab.bundled train|eval`: build, train and evaluate the bundled diffusion LLM (docs/bundled-recipe.md)."""
from __future__ import annotations

import sys

from engine.cli import run_commands

if __name__ == "__main__":
    sys.exit(run_commands("python -m lab.bundled", __doc__, ["lab.bundled.cli_train", "lab.bundled.cli_eval"]))
