"""What a user reads agrees with what runs: the README's package list, the help texts."""

import argparse
import re
from pathlib import Path

import pytest

from kws.cli import build_parser

REPO = Path(__file__).resolve().parent.parent


def test_the_readme_lists_the_debian_packages_make_setup_installs():
    make = (REPO / "Makefile").read_text()
    m = re.search(r"^DEB_PKGS\s*:=\s*((?:.*\\\n)*.*)$", make, re.M)
    makefile_pkgs = m[1].replace("\\\n", " ").split()
    readme = (REPO / "README.md").read_text()
    m = re.search(r"installs the Debian packages the project\s+needs \(`([^`]+)`", readme)
    assert m, "the README no longer lists the Debian packages"
    assert m[1].split() == makefile_pkgs


def _subparsers(parser, words=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, (*words, name))
    if words:
        yield " ".join(words), parser


# options in the parsers of data/features/train/eval/sweep, which another change is rewriting
# (data discovery): their help gains its default there
PENDING = set()


@pytest.mark.parametrize("command,parser", list(_subparsers(build_parser())),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_with_a_default_says_it_in_its_help(command, parser):
    quiet = []
    for a in parser._actions:
        if not a.option_strings or a.default in (None, False, argparse.SUPPRESS) \
                or (command, a.option_strings[-1]) in PENDING:
            continue
        if "default" not in (a.help or ""):
            quiet.append(a.option_strings[-1])
    assert not quiet, f"kws {command} --help shows no default for {quiet}"
