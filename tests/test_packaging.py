"""setup.cfg as pip reads it: every console command answers --version, sfrs-eval-all is
the command of tools/eval_all.py, and no install route pulls two faiss builds."""
import configparser
import re
from importlib.metadata import entry_points, version
from pathlib import Path

import pytest
from click.testing import CliRunner

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    return parser


def listed(text: str) -> list:
    return [line.strip() for line in text.splitlines() if line.strip()]


def console_scripts() -> dict:
    return dict(
        (part.strip() for part in line.split("=", 1))
        for line in listed(setup_cfg()["options.entry_points"]["console_scripts"])
    )


def installed(name: str):
    found = [ep for ep in entry_points(group="console_scripts") if ep.name == name]
    assert found, f"{name} is not installed: run pip install -e . --no-deps"
    return found[0]


def test_console_scripts__include_the_tools_and_are_installed_as_declared():
    scripts = console_scripts()
    assert {"sfrs-train", "sfrs-eval", "sfrs-synth", "sfrs-adapt", "sfrs-eval-all", "sfrs-data"} <= set(scripts)
    for name, target in scripts.items():
        assert installed(name).value == target


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_version__prints_the_command_and_the_installed_version(name):
    result = CliRunner().invoke(installed(name).load(), ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"{name} {version('sfrs')}\n"


def test_sfrs_eval_all__help_through_the_entry_point_is_the_command_of_the_script():
    from tools.eval_all import main as script_main

    command = installed("sfrs-eval-all").load()
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0, result.output
    assert "--datasets-root" in result.output and "--checkpoint" in result.output
    assert command is script_main


def test_sfrs_data__help_through_the_entry_point_lists_stats():
    result = CliRunner().invoke(installed("sfrs-data").load(), ["--help"])
    assert result.exit_code == 0, result.output
    assert "stats" in result.output and "--version" in result.output


def faiss_distributions(requirements: str) -> list:
    names = [re.match(r"[A-Za-z0-9._-]+", line).group(0).lower() for line in listed(requirements)]
    return [name for name in names if name.startswith("faiss")]


def test_install_routes__each_install_exactly_one_faiss():
    options = setup_cfg()
    base = faiss_distributions(options["options"]["install_requires"])
    assert len(base) == 1, base  # pip install -e . must give a working faiss
    for extra, requirements in options["options.extras_require"].items():
        both = base + faiss_distributions(requirements)
        assert len(both) == 1, f"pip install -e '.[{extra}]' installs {both}: they overwrite each other's faiss/"
