"""How many torch threads a CPU run takes when other processes hold some of its cores (train.py's
setup_device asks, without --threads)."""
import os
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
