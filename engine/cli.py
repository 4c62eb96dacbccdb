"""One dispatcher for the project's command lines: each command module has add_parser(subparsers) -> name and
run(args) -> exit code. Bad input of any kind (a usage error argparse finds, or a ValueError from the command) is one
line on stderr and exit code 2; `--help` prints the usage."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

USAGE_ERROR = 2  # the exit code of every refusal (argparse's own)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line naming the problem and pointing at --help (argparse's own
    prints the whole usage first). Sub-commands' parsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (run `{self.prog} --help` for the options)\n")


def run_commands(prog: str, description: str | None, command_modules: list[str], argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog=prog, description=description)
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
        return USAGE_ERROR
