"""--bench: how fast one optimiser step and an evaluation run, and how close that is to the
hardware's peak (model FLOP utilisation, MFU), from an analytical FLOP count."""
import math
import time

from lib.evaluate import evaluate
from lib.report import fmt_time

PEAK_BF16_TFLOPS = {"H100": 989, "H200": 989, "A100": 312}  # dense, per the vendors' data sheets


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


def bench(run, train_step, probes: dict):
    """Time run.cfg["bench"] optimiser steps (train_step(run, step)) after 3 warm-up steps (and
    compilation), then evaluation throughput; print both. probes: what the device is asked (sync,
    reset, memory, name: train.py's device_probes, where the device-specific calls live)."""
    cfg, model, sync = run.cfg, run.model, probes["sync"]
    for step in range(3):
        train_step(run, step)
    probes["reset"]()
    sync()
    t0 = time.time()
    for step in range(3, 3 + cfg["bench"]):
        train_step(run, step)
    sync()
    dt = (time.time() - t0) / cfg["bench"]
    B = cfg["batch_size"]
    flops, peak = flops_per_step(model, B), peak_flops(probes["name"])
    mfu = f"MFU {flops / dt / peak:.1%}" if peak and cfg["dtype"] == "bf16" else "MFU n/a"
    print(f"bench | {cfg['bench']} steps | {1 / dt:.2f} steps/s | {B / dt:.0f} samples/s | "
          f"{1000 * dt:.1f} ms/step | {flops / 1e12:.1f} TFLOP/step, {flops / dt / 1e12:.1f} "
          f"TFLOP/s, {mfu} | {probes['memory']()} | projected {cfg['steps']} steps: "
          f"{fmt_time(dt * cfg['steps'])}")
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
        t0 = time.time()
        result = evaluate(run.eval_fn, run.test, cfg, cfg["eval_limit"], run.autocast)
        dt = time.time() - t0
    full = len(run.test) / result["puzzles"] * dt
    print(f"bench | eval | {result['puzzles']} puzzles x {model.max_steps} steps, batch "
          f"{cfg['eval_batch_size']} | {result['puzzles'] / dt:.0f} puzzles/s | full test "
          f"split ({len(run.test)} puzzles): {fmt_time(full)}")
