"""`python -m engine <command>`: each command lives in its own module with add_parser(subparsers) and run(args)."""
from __future__ import annotations

import argparse
import importlib
import sys

# One line per command module.
COMMANDS = [
    "engine.cli_decode",
    "engine.uds.cli",
    "engine.bench.cli",
    "engine.bundled.cli_train",
    "engine.bundled.cli_eval",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for path in COMMANDS:
        module = importlib.import_module(path)
        modules[module.add_parser(subparsers)] = module
    args = parser.parse_args(argv)
    try:
        return modules[args.command].run(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
