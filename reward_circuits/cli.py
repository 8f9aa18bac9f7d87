"""``reward-circuits``: the command line.

    reward-circuits run                      # the main job on the packaged default model
    reward-circuits run --limit 40 --quick   # a smoke run
    reward-circuits probe --store runs/default/store/arithmetic_1 --out runs/probe

Each subcommand lives next to its analysis, in a module with ``register(subparsers)`` that adds its
parser (options generated from the analysis' config dataclass, see :mod:`reward_circuits.configs`)
and sets ``handler=fn(args) -> int``. Add a command by adding its module to :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMAND_MODULES = (
    "reward_circuits.pipeline.commands",
    "reward_circuits.icrl.command",
    "reward_circuits.irm.commands",
    "reward_circuits.preference.commands",
    "reward_circuits.applications.commands",
    "reward_circuits.calibrate.commands",
)


class CommandError(Exception):
    """A user-facing error of a command: printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reward-circuits", description="Find, measure and use the reward subsystem of a language model.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        return int(args.handler(args) or 0)
    except (CommandError, ValueError, FileNotFoundError, KeyError, RuntimeError) as e:
        print(f"reward-circuits: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
