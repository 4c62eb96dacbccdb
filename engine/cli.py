"""One dispatcher for the project's command lines: each command module has add_parser(subparsers) -> name and
run(args) -> exit code; a ValueError becomes one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import importlib
import sys


def run_commands(prog: str, description: str | None, command_modules: list[str], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    subparsers = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for path in command_modules:
        module = importlib.import_module(path)
        modules[module.add_parser(subparsers)] = module
    args = parser.parse_args(argv)
    try:
        return modules[args.command].run(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
