"""What a CPU run sets in its own process before it starts (train.py's setup_device): how many
torch threads it takes when other processes hold some of its cores, and that glibc keeps the
memory it frees."""
import ctypes
import os
import sys
import time

import torch


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


def keep_freed_memory(limit: int = 1 << 30):
    """Tell glibc's malloc to keep freed blocks of up to `limit` bytes for the next tensor of the
    size, rather than give them back to the kernel. By default a block over 128 KiB (a threshold
    that rises with the blocks freed, to 32 MiB at most) is mapped fresh for every tensor and
    unmapped when freed, so each training step faults its pages in again and the kernel zeroes
    them: 46,000-58,000 page faults and 17% of an HRM sudoku6 step on a CPU (337-349 ms with
    them, 280-290 without; docs/profile.md). The peak memory stays the same. Only on Linux
    (musl's mallopt does nothing)."""
    if sys.platform.startswith("linux"):
        mallopt = ctypes.CDLL(None).mallopt
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
        mallopt(M_MMAP_THRESHOLD, limit)  # blocks up to `limit` come from the heap, not mmap
        mallopt(M_TRIM_THRESHOLD, limit)  # and the heap keeps up to `limit` of free memory
