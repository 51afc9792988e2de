import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import paths, runs
from core.__main__ import COMMANDS, build_parser, main
from core.audio.decode import write_wav
from core.errors import DeepLanguageError
from tests.conftest import ROOT, tone_clip

TINY_MODEL = {"channels": [4, 8], "hidden": 16, "dropout": 0.1}


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow  # spawns a process
def test_help_lists_every_subcommand_and_each_has_its_own_help():
    result = cli("--help")
    assert result.returncode == 0
    names = [action for action in build_parser()._subparsers._group_actions[0].choices]
    assert len(names) == len(COMMANDS)
    for name in names:
        assert name in result.stdout
        sub = cli(name, "--help")
        assert sub.returncode == 0 and "usage: python -m core " + name in sub.stdout


@pytest.mark.slow  # spawns a process
def test_the_command_list_answers_without_importing_torch():
    probe = ("import contextlib, io, sys\nfrom core.__main__ import main\n"
             "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n"
             "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


@pytest.mark.slow  # spawns a process
def test_prepare_a_missing_folder_is_a_message_not_a_traceback(tmp_path):
    result = cli("prepare", "--data", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "error:" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0].startswith("error:")  # the message alone: no empty progress bar first


@pytest.mark.slow  # spawns a process
def test_prepare_runs_and_resumes(cv_sample, tmp_path):
    first = cli("prepare", "--data", str(cv_sample / "pt"), "--cache", str(tmp_path), "--workers", "2")
    assert first.returncode == 0, first.stderr
    assert "75 new" in first.stdout
    second = cli("prepare", "--data", str(cv_sample / "pt"), "--cache", str(tmp_path))
    assert "0 new" in second.stdout


@pytest.mark.slow  # spawns a process
def test_usage_errors_exit_2():
    assert cli("prepare").returncode == 2
    assert cli("no-such-command").returncode == 2


# --- bad settings are refused up front (exit 2, the option and its range named, nothing written) ---

@pytest.fixture(scope="module")
def tone_dataset(tmp_path_factory) -> Path:
    """<lang>/<speaker>/*.wav: 2 languages x 4 speakers x 2 clips of easy tones."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    for language in ("low", "high"):
        for speaker in range(4):
            (root / language / f"s{speaker}").mkdir(parents=True)
            for i in range(2):
                write_wav(root / language / f"s{speaker}" / f"{i}.wav", tone_clip(language, rng, seconds=1.6))
    return root


@pytest.fixture()
def runs_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "runs"
    monkeypatch.setattr(runs, "RUNS_DIR", folder)
    return folder


def run_main(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("option, value, allowed", [
    ("--epochs", "-1", ">= 1"),
    ("--epochs", "0", ">= 1"),
    ("--batch-size", "-5", ">= 1"),
    ("--batch-size", "0", ">= 1"),
    ("--threads", "-1", ">= 0"),
    ("--crop-seconds", "0", "> 0"),
    ("--lr", "nan", "finite number > 0"),
    ("--lr", "inf", "finite number > 0"),
    ("--weight-decay", "-0.1", ">= 0"),
    ("--patience", "-2", ">= 0"),
    ("--model-config", "[1,2]", "JSON object"),
    ("--model-config", "{oops", "not valid JSON"),
    ("--model", "transformer", "one of"),
    ("--n-mels", "0", ">= 1"),
    ("--hop-ms", "nan", "finite number"),
])
def test_train_refuses_bad_settings_before_making_a_run(capsys, tone_dataset, runs_dir, tmp_path,
                                                        option, value, allowed):
    with pytest.raises(SystemExit) if option == "--threads" else contextlib.nullcontext() as argparse_exit:
        code, err = run_main(capsys, "train", "--data", str(tone_dataset), "--cache", str(tmp_path / "cache"),
                             "--run", "bad", option, value)
    if argparse_exit is not None:  # not a config field: argparse refuses it, exit 2 as well
        code, err = argparse_exit.value.code, capsys.readouterr().err
    assert code == 2, err
    assert option in err and allowed in err and "Traceback" not in err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
    assert not (tmp_path / "cache").exists()  # nothing decoded either


@pytest.mark.parametrize("name", ["../x", "/abs/path", "sub/dir", ".hidden", "..", "a b", "", "_x", "x" * 101])
def test_run_names_are_one_safe_folder_name(capsys, tone_dataset, runs_dir, tmp_path, name):
    code, err = run_main(capsys, "train", "--data", str(tone_dataset), "--cache", str(tmp_path / "cache"),
                         "--run", name, "--epochs", "1")
    assert code == 2, err
    assert "--run" in err and "not a valid name" in err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
    assert not (runs_dir.parent / "x").exists() and not Path("/abs/path").exists()
    with pytest.raises(DeepLanguageError, match="not a valid name"):
        runs.create_run("identify", {}, runs_dir, name=name)
    with pytest.raises(DeepLanguageError, match="not a valid name"):  # reads as an option on a command line
        runs.create_run("identify", {}, runs_dir, name="-" + name)


def test_tune_checks_its_names_and_settings_before_any_trial(capsys, tone_dataset, tmp_path):
    base = ["tune", "--data", str(tone_dataset), "--tune-dir", str(tmp_path / "tune")]
    assert run_main(capsys, *base, "--study-name", "../escape")[0] == 2
    assert run_main(capsys, *base, "--best-to-run", "--run", "a/b")[0] == 2
    code, err = run_main(capsys, *base, "--epochs", "0")
    assert code == 2 and "--epochs" in err and ">= 1" in err
    code, err = run_main(capsys, *base, "--batch-size", "-5")
    assert code == 2 and "--batch-size" in err
    assert not (tmp_path / "tune").exists()
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--trials", "-1"])
    assert exit_info.value.code == 2 and "--trials" in capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("--seeds", "0"), ("--cutoff", "nan"), ("--threshold", "-1"),
                                           ("--budget", "0"), ("--hidden-size", "0"), ("--pretrain", ","),
                                           ("--pretrain-epochs", "-1"), ("--group-size", "0")])
def test_study_refuses_bad_settings_before_making_a_study(capsys, tone_dataset, tmp_path, option, value):
    code, err = run_main(capsys, "study", "--data", str(tone_dataset), "--target", "low",
                         "--out", str(tmp_path / "study"), option, value)
    assert code == 2, err
    assert option in err
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("args", [["--workers", "0"], ["--workers", "-3"], ["--n-mels", "-1"],
                                  ["--win-ms", "0"], ["--lowpass-hz", "inf"]])
def test_prepare_refuses_bad_settings(capsys, tone_dataset, tmp_path, args):
    try:
        code = main(["prepare", "--data", str(tone_dataset), "--cache", str(tmp_path / "cache"), *args])
    except SystemExit as argparse_exit:
        code = argparse_exit.code
    assert code == 2
    assert args[0] in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("args", [["--clips", "0"], ["--seed", "-1"], ["--workers", "0"], ["--languages", "xx"]])
def test_demo_corpus_refuses_bad_settings(capsys, tmp_path, args):
    try:
        code = main(["demo-corpus", "--out", str(tmp_path / "corpus"), *args])
    except SystemExit as argparse_exit:
        code = argparse_exit.code
    assert code == 2
    assert args[0] in capsys.readouterr().err
    assert not (tmp_path / "corpus").exists()


@pytest.mark.slow
def test_train_threads_0_means_torch_default(tone_dataset, tmp_path):
    env = {**os.environ, "DEEPLANGUAGE_RUNS_DIR": str(tmp_path / "runs")}
    result = subprocess.run([sys.executable, "-m", "core", "train", "--data", str(tone_dataset), "--cache",
                             str(tmp_path / "cache"), "--run", "t0", "--threads", "0", "--epochs", "1",
                             "--model", "cnn-baseline", "--model-config", json.dumps(TINY_MODEL),
                             "--batch-size", "4", "--crop-seconds", "1", "--min-seconds", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / "t0" / "best.pt").exists()


def test_prepare_max_seconds_refuses_long_clips_and_a_higher_limit_takes_them_in(capsys, tmp_path):
    rng = np.random.default_rng(1)
    for language in ("low", "high"):
        (tmp_path / "data" / language).mkdir(parents=True)
        write_wav(tmp_path / "data" / language / "short.wav", tone_clip(language, rng, seconds=1.0))
        write_wav(tmp_path / "data" / language / "long.wav", tone_clip(language, rng, seconds=4.0))
    base = ["prepare", "--data", str(tmp_path / "data"), "--cache", str(tmp_path / "cache"), "--workers", "1"]
    assert main([*base, "--max-seconds", "2"]) == 0
    assert "2 failed" in capsys.readouterr().out
    index = next((tmp_path / "cache").glob("*/index.jsonl")).read_text()
    assert "the limit is 2 s" in index and "--max-seconds 5" in index  # the option the message names exists
    assert main([*base, "--max-seconds", "10"]) == 0
    out = capsys.readouterr().out
    assert "2 new" in out and "0 failed" in out


def test_a_second_study_on_the_same_folder_says_study_already_running(capsys, tone_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "CACHE_DIR", tmp_path / "cache")  # the study's features stay out of data/cache
    study = tmp_path / "study"
    study.mkdir()
    with runs.RunLock(study):  # what a first `python -m core study` holds while it runs
        code, err = run_main(capsys, "study", "--data", str(tone_dataset), "--target", "low", "--pretrain", "none",
                             "--seeds", "1", "--no-autoencoder", "--out", str(study))
    assert code == 1
    assert "study already running" in err and "being trained" not in err


@pytest.mark.slow  # spawns a process
@pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")
def test_make_run_ignores_a_host_variable_from_the_environment():
    env = {**os.environ, "HOST": "public-name.example", "PORT": "9999"}
    plan = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert plan.returncode == 0, plan.stderr
    assert "--server.address 127.0.0.1 --server.port 8501" in plan.stdout
    env["DEEPLANGUAGE_HOST"], env["DEEPLANGUAGE_PORT"] = "0.0.0.0", "8080"
    plan = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert "--server.address 0.0.0.0 --server.port 8080" in plan.stdout


def test_one_comma_list_type_reads_every_list_option():
    import argparse

    from core.commands import comma_list

    assert comma_list()(" es, it ,,ja") == ("es", "it", "ja")
    assert comma_list(int)("0,1,4") == (0, 1, 4) and comma_list()("") == ()
    with pytest.raises(argparse.ArgumentTypeError, match="'1,x' is not a comma-separated list of integers"):
        comma_list(int)("1,x")


def test_study_reads_its_dataset_once_and_reports_each_phase(capsys, tone_dataset, tmp_path, monkeypatch):
    from core.data import cache, datasets
    from core.study import run as study_run

    monkeypatch.setattr(paths, "CACHE_DIR", tmp_path / "cache")  # the study's features stay out of data/cache
    reads, real_read = [], datasets.read_dataset

    def counted(*args, **kwargs):  # every read, even one the manifest cache answers
        reads.append(args)
        return real_read(*args, **kwargs)

    for module in (datasets, cache):
        monkeypatch.setattr(module, "read_dataset", counted)
    # Only the reading and the phases are under test: training, the identifier's latents and probing are stubbed.
    monkeypatch.setattr(study_run, "_train_all", lambda *args: None)
    monkeypatch.setattr(study_run, "extract_identify_latents", lambda study_dir: None)
    monkeypatch.setattr(study_run, "probe_study", lambda study_dir, n, on_progress: on_progress(1, 1))
    code, err = run_main(capsys, "study", "--data", str(tone_dataset), "--target", "low", "--pretrain", "none",
                         "--seeds", "1", "--no-autoencoder", "--out", str(tmp_path / "study"))
    assert code == 0, err
    assert len(reads) == 1, reads
    assert "reading the dataset" in err and "read 16 clips" in err
    for phase in ("features", "latents", "probes"):
        assert phase in err
    # The one summary, cached where the report and the pages read it; no second summary file.
    assert (tmp_path / "study" / "report_summary.json").exists() and not (tmp_path / "study" / "summary.json").exists()
