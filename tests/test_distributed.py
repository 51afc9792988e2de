"""core.distributed: two CPU processes (gloo) learn what one process learns with the same global batch."""

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from core import distributed, runs
from core.errors import DeepLanguageError
from tests.conftest import ROOT
from tests.test_jobs import make_tiny_dataset, tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fit_linear(info: distributed.DistInfo, steps: int = 20, batch: int = 8) -> torch.Tensor:
    """A linear regression by SGD on fixed data: the whole global batch, sharded over the ranks."""
    torch.manual_seed(0)
    x, w_true = torch.randn(steps * batch, 5), torch.arange(5.0)
    y = x @ w_true
    model = distributed.wrap(torch.nn.Linear(5, 1, bias=False), info)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(steps):
        rows = torch.arange(step * batch, (step + 1) * batch)
        mine = distributed.shard(rows, info)
        loss = torch.nn.functional.mse_loss(model(x[mine]).squeeze(1), y[mine])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return distributed.unwrap(model).weight.detach().clone()


def _worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = distributed.init_from_env()
    assert info.backend == "gloo" and info.world_size == world_size and info.is_main == (rank == 0)
    weight = _fit_linear(info)
    total = distributed.all_reduce_sum([1.0, float(rank)], info)
    assert total == [world_size, sum(range(world_size))]
    assert distributed.broadcast_object(f"made by {rank}", info) == "made by 0"
    torch.save(weight, f"{out}/rank{rank}.pt")
    distributed.cleanup()


def test_single_process_is_a_no_op():
    info = distributed.init_from_env()
    assert not info.enabled and info.is_main and info.device == "cpu"
    rows = torch.arange(10)
    assert torch.equal(distributed.shard(rows, info), rows)
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, info) is model and distributed.unwrap(model) is model


def test_shards_partition_the_global_batch():
    parts = [distributed.shard(torch.arange(10), distributed.DistInfo(rank=r, world_size=3)) for r in range(3)]
    assert torch.equal(torch.cat(parts), torch.arange(10)) and [len(p) for p in parts] == [4, 3, 3]
    with pytest.raises(DeepLanguageError, match="batch size of at least 4"):
        distributed.shard(torch.arange(3), distributed.DistInfo(rank=0, world_size=4))


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    # fork: the children need not import torch again (spawn costs ~10 s here)
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    single = _fit_linear(distributed.SINGLE)
    for rank in range(2):
        assert torch.allclose(torch.load(tmp_path / f"rank{rank}.pt"), single, atol=1e-5)


@pytest.mark.slow
def test_torchrun_training_matches_single_process(tmp_path):
    """`torchrun --nproc_per_node=2 -m core train` on CPU: same global batch, final loss within a few %."""
    config = tiny_config(make_tiny_dataset(tmp_path / "data"), tmp_path / "cache", epochs=3, batch_size=8,
                         freq_masks=0, time_masks=0, model_config={"channels": [4, 8], "hidden": 16, "dropout": 0.0})
    from dataclasses import asdict

    from core.identify.train import train

    single = train(config, runs_dir=tmp_path / "runs", name="single")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "core",
               "train", "--resume", str(runs.create_run("identify", {"train": asdict(config)}, tmp_path / "runs",
                                                          name="ddp")), "--threads", "1"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    one, two = runs.read_metrics(single), runs.read_metrics(tmp_path / "runs" / "ddp")
    assert len(one) == len(two) == 3
    assert runs.read_json(tmp_path / "runs" / "ddp" / "status.json")["state"] == "finished"
    for a, b in zip(one, two):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.05)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=0.05)
