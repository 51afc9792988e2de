"""Finished background jobs are reaped at once, not left as zombie children of the server."""

import json
import time
from pathlib import Path

import pytest

from core.jobs import launch


def _zombie_or_gone(pid: int, seconds: float) -> str:
    """'gone' once the kernel has forgotten ``pid`` (its parent collected it), else 'zombie'/'alive'."""
    deadline = time.monotonic() + seconds
    zombie_since = None
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return "gone"
        if fields[0] != "Z":
            zombie_since = None
        elif zombie_since is None:
            zombie_since = time.monotonic()
        elif time.monotonic() - zombie_since > 5:  # a reaper thread collects it within milliseconds
            return "zombie"
        time.sleep(0.2)
    return "zombie" if zombie_since else "alive"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_finished_job_is_not_left_a_zombie(tmp_path):
    run_dir = tmp_path / "broken-run"
    run_dir.mkdir()
    # A run whose trainer exits at once (no dataset): the quickest real job to launch and finish.
    (run_dir / "config.json").write_text(json.dumps({"kind": "identify", "train": {"data_dir": ""}}))
    launch.start(run_dir)
    pid = json.loads((run_dir / "job.json").read_text())["pid"]
    assert _zombie_or_gone(pid, 60) == "gone"
