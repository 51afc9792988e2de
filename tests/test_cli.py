import subprocess
import sys

import pytest

from core.__main__ import COMMANDS, build_parser
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # every test here spawns a process


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_help_lists_every_subcommand_and_each_has_its_own_help():
    result = cli("--help")
    assert result.returncode == 0
    names = [action for action in build_parser()._subparsers._group_actions[0].choices]
    assert len(names) == len(COMMANDS)
    for name in names:
        assert name in result.stdout
        sub = cli(name, "--help")
        assert sub.returncode == 0 and "usage: python -m core " + name in sub.stdout


def test_prepare_a_missing_folder_is_a_message_not_a_traceback(tmp_path):
    result = cli("prepare", "--data", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "error:" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_prepare_runs_and_resumes(cv_sample, tmp_path):
    first = cli("prepare", "--data", str(cv_sample / "pt"), "--cache", str(tmp_path), "--workers", "2")
    assert first.returncode == 0, first.stderr
    assert "75 new" in first.stdout
    second = cli("prepare", "--data", str(cv_sample / "pt"), "--cache", str(tmp_path))
    assert "0 new" in second.stdout


def test_usage_errors_exit_2():
    assert cli("prepare").returncode == 2
    assert cli("no-such-command").returncode == 2
