"""--bench: how fast one optimiser step and an evaluation run, and how close that is to the
hardware's peak, from an analytical FLOP count: model FLOP utilisation (MFU) against a GPU's data
sheet, and on every device the share of the speed a plain matmul reaches there (matmul_peak, the
only peak a CPU has). And before any run: what it will cost on this machine, when that is long
(say_cost), and then whether a micro-batch can hold what its backward keeps (check_step_memory)."""
import math
import time

import torch

import data
from lib import parallel
from lib.config import fail, read_checkpoint
from lib.evaluate import evaluate
from lib.report import fmt_duration, fmt_time

PEAK_BF16_TFLOPS = {"H100": 989, "H200": 989, "A100": 312}  # dense, per the vendors' data sheets
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}

# The projection's speed: this share of the probed matmul peak. On a 2-core AMD EPYC VM
# (docs/profile.md) the papers' presets, benched at batch 4 to 16, reach 80-85% of it, the small
# CPU presets 50-68%. On a GPU the share is lower (on an H100 the presets ran at 23-37% of the
# data sheet's peak, docs/reproduce.md): there the projected time is a lower bound
EFFICIENCY = 0.8
# A run is long here when one step takes longer than LONG_STEP_S (the terminal would show nothing
# for that long) or the run longer than LONG_RUN_S; it says so before it starts
LONG_STEP_S, LONG_RUN_S = 10, 24 * 3600
# No device torch runs on is slower than this (one thread of the EPYC VM: 110 GFLOP/s): a run that
# is short even at this speed is not probed, so that small runs start at once
SLOWEST_FLOPS = 5e9
# the small task of each kind of puzzle, which shows on a CPU in minutes what its benchmark shows
SMALL_TASK = {"sudoku": "sudoku6", "maze": "maze-small", "arc": "arc-mini"}


def flops_per_step(model, batch_size: int) -> float:
    """Matmul and attention FLOPs of one optimiser step: the forward of every net call, plus a
    backward (2x the forward) of the calls that carry gradient. Norms, RoPE, the heads and the
    optimiser are left out (under 1%)."""
    c = model.config
    L, D = c.puzzle_emb_len + c.seq_len, c.hidden_size

    def swiglu(d, tokens):  # three matmuls of d x inter, 2 FLOPs per multiply-add
        return 6 * tokens * d * (256 * math.ceil(round(c.expansion * d * 2 / 3) / 256))

    mixer = swiglu(L, D) if c.mlp_t else 8 * L * D * D + 4 * L * L * D  # MLP-t, or qkv+o+attention
    per_call = c.num_layers * (swiglu(D, L) + mixer)
    forward, with_grad = model.calls_per_step()
    return batch_size * per_call * (forward + 2 * with_grad)


def peak_flops(gpu_name: str) -> float | None:
    return next((1e12 * tf for gpu, tf in PEAK_BF16_TFLOPS.items() if gpu in gpu_name), None)


def matmul_peak(device, dtype: str, sync, n: int) -> float:
    """FLOP/s of the fastest of a few n x n matmuls (2 n^3 FLOPs each) on the device, in the run's
    dtype and (on a CPU) with the threads torch uses: the speed the step's matmuls could reach
    here. n: train.py's device_probes says (2048 on a CPU, 8192 on a GPU, where a smaller product
    leaves it idle between launches). Half a second, or one warm-up and three products when they
    are slower."""
    a, b = (torch.randn(n, n, device=device, dtype=DTYPES[dtype]) for _ in range(2))
    times = []
    while len(times) < 4 or (sum(times[1:]) < 0.5 and len(times) < 50):
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / min(times[1:])  # the first product warms up


def device_words(device, name: str) -> str:
    """The device in words: a GPU's name, or how many threads of this CPU torch uses."""
    threads = torch.get_num_threads()
    return name or (f"this CPU's {threads} thread" + "s" * (threads > 1) if device.type == "cpu"
                    else device.type)


def rate(flops: float) -> str:
    """FLOP/s in the unit that suits them: GFLOP/s on a CPU, TFLOP/s on a GPU."""
    return f"{flops / 1e12:.3g} TFLOP/s" if flops >= 1e12 else f"{flops / 1e9:.3g} GFLOP/s"


def say_cost(cfg: dict, model, device, probes: dict, log_file) -> float | None:
    """Before a training run (also --dry-run and --bench) that is long on this machine, and
    before its data is loaded, print and log one line: what it is and what it will cost here,
    from the FLOP count of `model` (its sizes: it may live on the meta device) and the probed
    matmul peak (at EFFICIENCY of it), one step and the whole run, and the small task that shows
    the same in minutes. Returns the projected seconds of one step; None, silently, for a short
    run and for --eval-only and --solve, which train nothing."""
    if cfg["eval_only"] or cfg.get("solve"):
        return None
    ranks = parallel.world()  # under torchrun each rank runs its share of the slots at once
    flops = flops_per_step(model, cfg["batch_size"] // ranks)
    if cfg["bench"]:
        steps, what = 3 + cfg["bench"], f"--bench {cfg['bench']} with its 3 warm-up steps"
    else:
        done = read_checkpoint(cfg["resume"], mmap=True)["step"] if cfg["resume"] else 0
        steps, what = cfg["steps"] - done, "the steps left" if done else "the run"
    limit = 60 * cfg["minutes"] if cfg["minutes"] else math.inf  # --minutes stops it sooner

    def long(speed: float) -> bool:  # at this many FLOP/s
        return flops / speed >= LONG_STEP_S or min(flops * steps / speed, limit) >= LONG_RUN_S

    if not long(SLOWEST_FLOPS):
        return None
    peak = matmul_peak(device, cfg["dtype"], probes["sync"], probes["matmul_size"])
    if not long(EFFICIENCY * peak):
        return None
    step_s = flops / (EFFICIENCY * peak)
    cut = ""
    if limit < step_s * steps:  # --minutes stops it after this step (the first at least)
        last = int(limit / step_s)
        cut = f", but --minutes {cfg['minutes']:g} stops it " + \
            (f"after about {last:,} steps" if last > 1 else "after its first step")
    per_step = f"{flops / 1e12:.3g} TFLOP per step" + f" on each of {ranks} ranks" * (ranks > 1)
    small = SMALL_TASK.get(data.TASKS[cfg["task"]]["kind"], cfg["task"])
    hint = f" | the same in minutes on this machine: --task {small}" if small != cfg["task"] else ""
    line = (f"cost here | {cfg['model']} ({cfg['net']}) on {cfg['task']}, batch "
            f"{cfg['batch_size']}: {per_step}; a matmul runs at {rate(peak)} on "
            f"{device_words(device, probes['name'])}, and at {EFFICIENCY:.0%} of that one "
            f"step takes about {fmt_duration(step_s)}, {what} ({steps:,} steps) about "
            f"{fmt_duration(step_s * steps)}{cut}{hint}")
    print(line)
    log_file.write(line + "\n")
    return step_s


def saved_bytes(run, supervision_step, slots: int) -> int:
    """Bytes of the tensors autograd keeps for the backward of the supervision step of the first
    `slots` slots of the run's first batch (the weights and buffers not counted); the forward runs
    in eval mode, so that halting draws nothing from the run's random state."""
    model, saved = run.model, {}
    inputs, labels, ids = (t.to(run.device) for t in run.train.batch(0, slots, run.cfg["seed"],
                                                                      False))

    def keep(t: torch.Tensor) -> torch.Tensor:
        if t.layout == torch.strided:  # views of one tensor share its storage: counted once
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    fixed = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    model.eval()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), run.autocast:
        supervision_step(model, parallel.slots(run.carry, slice(0, slots)), inputs, labels, ids)
    model.train()
    return sum(n for ptr, n in saved.items() if ptr not in fixed)


# A step's peak memory over the tensors autograd keeps for its backward, per slot: 1.2-1.5 on a
# CPU for the papers' presets (docs/profile.md); the rest is the backward's gradients and the
# forward's passing tensors
PEAK_OVER_SAVED = 1.5


def check_step_memory(run, supervision_step, have: int, whose: str):
    """Refuse, before the first step of a long run, a micro-batch whose slots cannot even hold the
    tensors autograd keeps for their backward (what one more slot adds to saved_bytes, times its
    slots, more than `have` bytes; the difference leaves out what does not grow with the slots,
    such as autocast's copies of the weights): such a run would run out of memory (or into swap)
    for certain, after minutes or hours, and on a CPU without a word (the kernel stops it). The
    line names the --grad-accum whose micro-batches fit at PEAK_OVER_SAVED times their saved
    tensors in 80% of the memory."""
    cfg, ranks = run.cfg, parallel.world()
    mine = cfg["batch_size"] // ranks  # this rank's slots, in grad_accum micro-batches
    # from 2 to 3 slots, not from 1: with one slot some tensors are views that need no copy
    k = min(3, mine)
    per_slot = saved_bytes(run, supervision_step, k) - \
        (saved_bytes(run, supervision_step, k - 1) if k > 1 else 0)
    slots = mine // cfg["grad_accum"]
    if slots * per_slot <= have:
        return
    fits = [a for a in range(1, mine + 1)
            if mine % a == 0 and mine // a * per_slot * PEAK_OVER_SAVED <= 0.8 * have]
    fix = f"run with --grad-accum {fits[0]} ({mine // fits[0]} slots per micro-batch; the same " \
        f"training, in smaller pieces)" if fits else "one slot alone does not fit: use a " \
        "smaller model or a machine with more memory"
    fail(f"one micro-batch of {slots:,} slots keeps at least {slots * per_slot / 2**30:,.1f} GiB "
         f"for its backward ({per_slot / 2**20:,.0f} MiB per slot, measured), more than "
         f"{whose} {have / 2**30:,.0f} GiB: {fix}")


def q_target_seconds(run, train_step, sync) -> float:
    """Seconds per optimiser step spent in model.continue_target (HRM, TRM --act-continue),
    timed where supervision_step calls it, over run.cfg["bench"] more steps. In the step it can
    cost more than alone on the same batch (on a CPU without lib/cpu.py's allocator setting, HRM
    on sudoku6: 157-174 against 93-110 ms, its fresh tensors page-faulting; docs/profile.md), so
    it is timed in place."""
    model, spent, target = run.model, [], run.model.continue_target

    def timed(*args):
        sync()
        t0 = time.perf_counter()
        q = target(*args)
        sync()
        spent.append(time.perf_counter() - t0)
        return q

    model.continue_target = timed  # over the class's method, for these steps only
    try:
        for step in range(3 + run.cfg["bench"], 3 + 2 * run.cfg["bench"]):
            train_step(run, step)
    finally:
        del model.continue_target
    return sum(spent) / run.cfg["bench"]


def bench(run, train_step, probes: dict):
    """Time run.cfg["bench"] optimiser steps (train_step(run, step)) after 3 warm-up steps (and
    compilation), then evaluation throughput; print both, with the step's share of the matmul
    peak and (HRM, TRM --act-continue) what its Q-learning target costs. probes: what the device
    is asked (sync, reset, memory, name: train.py's device_probes, where the device-specific
    calls live)."""
    cfg, model, sync = run.cfg, run.model, probes["sync"]
    for step in range(3):
        train_step(run, step)
    probes["reset"]()
    sync()
    t0 = time.perf_counter()
    for step in range(3, 3 + cfg["bench"]):
        train_step(run, step)
    sync()
    dt = (time.perf_counter() - t0) / cfg["bench"]
    B = cfg["batch_size"]
    flops, peak = flops_per_step(model, B), peak_flops(probes["name"])
    mfu = f"MFU {flops / dt / peak:.1%}" if peak and cfg["dtype"] == "bf16" else "MFU n/a"
    # the peak that MFU lacks on a CPU (and that a GPU's data sheet overstates): measured here
    matmul = matmul_peak(run.device, cfg["dtype"], sync, probes["matmul_size"])
    print(f"bench | {cfg['bench']} steps | {1 / dt:.2f} steps/s | {B / dt:.0f} samples/s | "
          f"{1000 * dt:.1f} ms/step | {flops / 1e12:.3g} TFLOP/step, {rate(flops / dt)}: "
          f"{flops / dt / matmul:.0%} of the {cfg['dtype']} matmul peak of "
          f"{device_words(run.device, probes['name'])} ({rate(matmul)}), {mfu} | "
          f"{probes['memory']()} | projected {cfg['steps']} steps: {fmt_time(dt * cfg['steps'])}")
    if model.learns_continue:  # HRM, TRM --act-continue: one more forward segment per step
        if cfg["compile"]:  # the compiled step holds it in its graph: nothing to time it by
            print("bench | Q target | not timed with --compile: bench without it to see what "
                  "the Q-learning target's extra forward segment costs")
        else:
            q_dt = q_target_seconds(run, train_step, sync)
            print(f"bench | Q target | its extra forward segment, no gradient, timed in "
                  f"{cfg['bench']} more steps: {1000 * q_dt:.1f} ms/step, {q_dt / dt:.0%} of "
                  f"the step")
    if run.test.votes([model.max_steps]) is not None:  # ARC: a vote needs every copy, so there
        # is no cheap partial evaluation
        print(f"bench | eval | not timed for {run.cfg['task']}: an evaluation runs all "
              f"{len(run.test)} test "
              f"copies x {model.max_steps} steps, about {len(run.test) * model.max_steps / B:.0f}"
              f" forward passes of a batch of {B}")
        return
    # evaluation throughput: --eval-limit test puzzles (0 = all), every one for all N_sup steps;
    # the first pass warms up (and compiles for each batch shape), the second is timed
    for _ in range(2):
        sync()
        t0 = time.perf_counter()
        result = evaluate(run.eval_fn, run.test, cfg, cfg["eval_limit"], run.autocast)
        dt = time.perf_counter() - t0
    full = len(run.test) / result["puzzles"] * dt
    print(f"bench | eval | {result['puzzles']} puzzles x {model.max_steps} steps, batch "
          f"{cfg['eval_batch_size']} | {result['puzzles'] / dt:.0f} puzzles/s | full test "
          f"split ({len(run.test)} puzzles): {fmt_time(full)}")
