"""The device a run uses: which one (CPU, CUDA, Apple's MPS), its threads, its dtype, what --bench
and --trajectories ask of it (peak memory, its name, its memory in all), and the random state a
checkpoint keeps. Nothing of a training step lives here."""
import os
import time
from contextlib import nullcontext

import torch

from lib import parallel
from lib.config import fail


def busy_cores(look: float = 0.25) -> tuple[int, int] | None:
    """(cores busy with other work, cores this process may use), from the CPU time the whole
    machine spent idle during a short look at /proc/stat (Linux; None elsewhere)."""
    def idle_and_total():
        with open("/proc/stat") as f:  # cpu  user nice system idle iowait irq softirq steal ...
            ticks = [int(v) for v in f.readline().split()[1:]]
        return ticks[3] + ticks[4], sum(ticks)

    try:
        idle0, total0 = idle_and_total()
        time.sleep(look)
        idle1, total1 = idle_and_total()
    except (OSError, ValueError, IndexError):
        return None
    machine, mine = os.cpu_count() or 1, len(os.sched_getaffinity(0))
    busy = round(machine * (1 - (idle1 - idle0) / max(total1 - total0, 1)))
    return min(busy, mine), mine


def leave_busy_cores():
    """On a CPU where other processes hold cores, run one torch thread per free core (at least
    one), and say so in one line. torch's threads wait for each other at every operation, so one
    thread on a taken core slows them all: on a 2-core VM beside a 2-thread process, a sudoku6
    step of 2 threads took 3,630 ms, of 1 thread 254 ms (docs/running.md)."""
    found = busy_cores()
    if found is None:
        return
    busy, mine = found
    threads = torch.get_num_threads()
    free = max(1, mine - busy)
    if busy and free < threads:
        torch.set_num_threads(free)
        print(f"cpu: {busy} of {mine} cores are busy with other work: running {free} torch "
              f"thread{'s' * (free > 1)}, not {threads} (--threads N to choose)")


def check_device(device: str | None):
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


def device_probes(device) -> dict:
    """What --bench and --trajectories ask of the device: wait for it, reset and read its peak
    memory, its name, and its memory in all (bytes, whose): a CUDA GPU's own, else the machine's
    (which Apple's GPU shares)."""
    if device.type == "cuda":
        gib = lambda: torch.cuda.max_memory_allocated() / 2**30
        return dict(sync=torch.cuda.synchronize, reset=torch.cuda.reset_peak_memory_stats,
                    memory=lambda: f"peak memory {gib():.2f} GiB",
                    name=torch.cuda.get_device_name(device),
                    total=(torch.cuda.get_device_properties(device).total_memory, "this GPU's"))
    import resource  # Unix only: the whole process's peak resident memory (Linux: KiB)
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return dict(sync=lambda: None, reset=lambda: None, memory=lambda: f"peak RSS {rss():.2f} GiB",
                name="", total=(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                                "this machine's"))


def setup_device(cfg: dict):
    """Threads, device (under torchrun: this rank's GPU), compute dtype and the seed; returns
    (device, autocast context)."""
    check_device(cfg["device"])
    cfg["device"] = cfg["device"] or ("cuda" if torch.cuda.is_available() else
                                      "mps" if torch.backends.mps.is_available() else "cpu")
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    elif cfg["device"] == "cpu":
        leave_busy_cores()
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


def random_state(device) -> dict:
    """This process's random state: the CPU generator's, and the GPU's on CUDA."""
    return dict(cpu=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state() if device.type == "cuda" else None)


def restore_random_state(device, rng: dict):
    torch.set_rng_state(rng["cpu"])
    if device.type == "cuda" and rng["cuda"] is not None:
        torch.cuda.set_rng_state(rng["cuda"])
