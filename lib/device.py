"""The device a run uses: checking --device, threads, the GPU of a torchrun rank, the compute
dtype and seed (setup), and what --bench asks of the device (probes)."""
from contextlib import nullcontext

import torch

from lib import parallel
from lib.config import fail


def check(device: str | None):
    """None (the first available) or a device this machine has: cpu, cuda[:i], mps."""
    if device is None:
        return
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        fail(f"--device {device!r} is not one of cpu, cuda, cuda:N, mps")
    if kind == "cuda" and not torch.cuda.is_available():
        fail(f"--device {device}: this machine has no CUDA GPU that torch {torch.__version__} can "
             f"use; leave --device out (or say cpu)")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        fail(f"--device {device}: there are only {torch.cuda.device_count()} CUDA devices")
    if kind == "mps" and not torch.backends.mps.is_available():
        fail("--device mps: this machine has no Apple GPU that torch can use; leave --device out")


def probes(device) -> dict:
    """What --bench asks of the device: wait for it, reset and read its peak memory, its name."""
    if device.type == "cuda":
        gib = lambda: torch.cuda.max_memory_allocated() / 2**30
        return dict(sync=torch.cuda.synchronize, reset=torch.cuda.reset_peak_memory_stats,
                    memory=lambda: f"peak memory {gib():.2f} GiB",
                    name=torch.cuda.get_device_name(device))
    import resource  # Unix only: the whole process's peak resident memory (Linux: KiB)
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return dict(sync=lambda: None, reset=lambda: None, memory=lambda: f"peak RSS {rss():.2f} GiB",
                name="")


def setup(cfg: dict):
    """Threads, device (under torchrun: this rank's GPU), compute dtype and the seed; returns
    (device, autocast context)."""
    check(cfg["device"])
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    cfg["device"] = cfg["device"] or ("cuda" if torch.cuda.is_available() else
                                      "mps" if torch.backends.mps.is_available() else "cpu")
    local = parallel.start("nccl" if cfg["device"].startswith("cuda") else "gloo")
    cfg["ranks"] = parallel.world()
    if cfg["ranks"] > 1 and cfg["device"].startswith("cuda"):
        cfg["device"] = f"cuda:{local}"
        torch.cuda.set_device(local)
    device = torch.device(cfg["device"])
    cfg["dtype"] = cfg["dtype"] or ("bf16" if device.type == "cuda" else "fp32")
    # deviation: bf16 through autocast (fp32 master weights, matmuls in bf16) rather than casting
    # every weight and activation to bf16 by hand as the official code does
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg["dtype"] == "bf16" \
        else nullcontext()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(cfg["seed"])  # the same on every rank: the same initial weights
    return device, autocast
