"""First contact without silent failures (issue 25): what a newcomer hits in the first hour.

Each test here failed before its fix (noted per test).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from reward_circuits.cli import build_parser, main

pytestmark = pytest.mark.usefixtures("one_thread")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_registered_command_renders_its_help():
    """Was: `run --help` crashed (``ValueError: unsupported format character ';'``: "1%;" in a help)."""
    commands = _subcommands(build_parser())
    assert {"run", "sae-td", "irm", "yfpo", "applications", "compare", "probe"} <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert text.startswith("usage:") and len(text) > 100, name
    assert "1%" in commands["run"].format_help()  # the percent sign is shown, not eaten


@pytest.mark.parametrize("command", ["run", "applications"])
def test_help_exits_zero_from_the_command_line(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: reward-circuits " + command in capsys.readouterr().out
