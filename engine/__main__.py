"""`python -m engine <command>`: decode, select, bench. Each command lives in its own module (engine/cli.py).

The bundled model's training recipe has its own command line: `python -m lab.bundled train|eval`."""
from __future__ import annotations

import sys

from engine.cli import run_commands

COMMANDS = ["engine.cli_decode", "engine.uds.cli", "engine.bench.cli"]  # one line per command module


def main(argv: list[str] | None = None) -> int:
    return run_commands("python -m engine", __doc__, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
