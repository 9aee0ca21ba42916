"""``sync_bn``: CPUSyncBatchNorm over gloo equals BatchNorm on the whole batch,
and 2 DDP processes x 3 steps end with identical parameters and BN
statistics on both ranks (tools/dist_train.sh, the --sync-bn flag)."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from toolbox.engine.sync_bn import CPUSyncBatchNorm, convert_sync_batchnorm, count_batchnorms

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_run(rank, port, x, weight, bias, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    bn = CPUSyncBatchNorm(3, momentum=0.1)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    part = x.chunk(2)[rank].clone().requires_grad_(True)
    y = bn(part)
    (y * torch.arange(1.0, 1 + y.numel()).view_as(y).flip(0) ** 0.5).sum().backward()
    dist.all_reduce(bn.weight.grad)  # what DDP does (sum here; DDP averages)
    torch.save(dict(y=y.detach(), grad=part.grad, weight_grad=bn.weight.grad,
                    mean=bn.running_mean, var=bn.running_var),
               os.path.join(out_dir, f"r{rank}.pt"))
    dist.destroy_process_group()


def test_cpu_sync_batchnorm_equals_batchnorm_on_the_global_batch(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(6, 3, 5, 4) * 3 + 1
    weight, bias = torch.rand(3) + 0.5, torch.randn(3)
    mp.spawn(_rank_run, args=(_free_port(), x, weight, bias, str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"r{r}.pt", weights_only=True) for r in (0, 1))

    ref = nn.BatchNorm2d(3, momentum=0.1)
    with torch.no_grad():
        ref.weight.copy_(weight)
        ref.bias.copy_(bias)
    xr = x.clone().requires_grad_(True)
    y = ref(xr)
    halves = [h for h in y.chunk(2)]
    loss = sum((h * torch.arange(1.0, 1 + h.numel()).view_as(h).flip(0) ** 0.5).sum()
               for h in halves)
    loss.backward()
    torch.testing.assert_close(torch.cat([r0["y"], r1["y"]]), y.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([r0["grad"], r1["grad"]]), xr.grad, atol=1e-4,
                               rtol=1e-4)
    torch.testing.assert_close(r0["weight_grad"], ref.weight.grad, atol=1e-4, rtol=1e-4)
    for r in (r0, r1):
        torch.testing.assert_close(r["mean"], ref.running_mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(r["var"], ref.running_var, atol=1e-5, rtol=1e-5)


def test_convert_keeps_weights_and_statistics():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm1d(2)))
    model[1].running_mean.fill_(0.5)
    converted = convert_sync_batchnorm(model)
    assert count_batchnorms(converted) == (0, 2)
    assert isinstance(converted[1], CPUSyncBatchNorm) and converted[1].weight is model[1].weight
    assert torch.equal(converted[1].running_mean, torch.full((4,), 0.5))
    x = torch.randn(2, 3, 6, 6)
    converted.eval()
    model.eval()
    torch.testing.assert_close(converted[:2](x), model[:2](x))  # one process: plain BN


def _dist_train(tmp_path, name, *flags):
    config = tmp_path / f"{name}.py"
    config.write_text(
        f"_base_ = [{str(ROOT / 'tests' / 'engine' / 'toy_config.py')!r}]\n"
        "custom_imports = dict(imports=['toy_components', 'switch_toys'],"
        " allow_failed_imports=False)\n"
        "train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=3)\n"
        "param_scheduler = []\n"
        "default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False,"
        " interval=3))\n"
        "custom_hooks = [dict(type='DumpRankState')]\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "engine"), PYTHON=sys.executable,
               PORT=str(_free_port()), OMP_NUM_THREADS="1")
    run = subprocess.run(["bash", str(ROOT / "tools" / "dist_train.sh"), str(config), "2",
                          "--work-dir", str(tmp_path / name), *flags],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return [torch.load(tmp_path / name / f"state_rank{r}.pt", weights_only=True)
            for r in (0, 1)]


def test_two_processes_three_steps_sync_bn_identical_ranks(tmp_path):
    rank0, rank1 = _dist_train(tmp_path, "sync", "--sync-bn")
    assert rank0["iters"] == rank1["iters"] == 3
    assert (rank0["plain_bn"], rank0["sync_bn"]) == (0, 1)
    assert rank0["state"].keys() == rank1["state"].keys()
    for key in rank0["state"]:  # parameters and BN running statistics
        torch.testing.assert_close(rank0["state"][key], rank1["state"][key], rtol=0, atol=0,
                                   msg=key)
    assert int(rank0["state"]["net.1.num_batches_tracked"]) == 3

    plain0, plain1 = _dist_train(tmp_path, "plain")  # without: per-rank statistics
    assert (plain0["plain_bn"], plain0["sync_bn"]) == (1, 0)
    for key in plain0["state"]:
        if "running" not in key and "num_batches" not in key:  # DDP keeps parameters equal
            torch.testing.assert_close(plain0["state"][key], plain1["state"][key], rtol=0,
                                       atol=0, msg=key)
    assert not torch.equal(plain0["state"]["net.1.running_mean"],
                           plain1["state"]["net.1.running_mean"])
