"""Recursion at inference: what more test-time compute buys a trained model, along the three axes
the field measures, and the compute each costs (train.py --eval-only).

depth      more supervision steps than training ran (fixed: the answer after k steps), or the
           halting head's choice (adaptive: the answer at the first step whose head says stop)
breadth    K trajectories per puzzle, run as one batch of B*K rows; with --noise sigma each gets
           Gaussian noise on its latent state at every supervision step (PTRM, arXiv 2605.19943).
           One pass runs the largest K asked for; a smaller K is scored on its first K
           trajectories, which are K independent trajectories all the same
selection  which trajectory's answer counts (SELECTIONS):
             q         the most confident halting head (PTRM; TRM: q, HRM: Q(halt) - Q(continue))
             first     the first trajectory to halt, with its answer then ("Speed is Confidence",
                       arXiv 2601.19085); all K stop there, which is what its compute counts
             vote      the answer most trajectories give (ties: the more confident)
             residual  the trajectory nearest a fixed point: the smallest relative change of its
                       latent in the last step, ||z_k - z_{k-1}|| / ||z_{k-1}|| between the
                       model's last two outputs, so that the noise counts only as far as the model
                       did not undo it (EqR arXiv 2605.21488, FPRM arXiv 2606.18206)
           and oracle: any trajectory right, the ceiling no selection rule can pass
compute    net calls per puzzle = supervision steps x trajectories x net calls per step

The noise (our reading; the PTRM paper gives sigma without fixing its scale here): at every
supervision step, before the model runs, z <- z + sigma * rms(z) * eps with eps ~ N(0, I) and
rms(z) the root mean square of each token's latent vector, so sigma is relative to the latent's
own size (about 1 after the blocks' RMSNorm). The latent is TRM's z and HRM's z_L; the answer
state (y, z_H) is left alone. A trajectory's noise is a function of --seed, the test puzzle, the
trajectory's number and the step (evaluate.trajectory_noise), so a run is repeatable, and its
numbers do not depend on --eval-batch-size, the number of ranks, or the largest K asked for.
"""
import math
import os
import time
from contextlib import nullcontext

import torch

import data
import trm
from lib import parallel
from lib.config import fail
from lib.evaluate import majority, run_on_test
from lib.report import fmt_time, plot_fixed_point, plot_recursion_scaling, plot_scaling

SELECTIONS = ("q", "first", "vote", "residual")


def select(run: dict, rule: str, k: int) -> tuple:
    """(right (num,) bools, supervision steps each puzzle ran (num,)) when `rule` picks among a
    run's trajectories after at most k steps."""
    exact, conf = run["exact"][:, :, :k], run["conf"][:, :, :k]  # (num, K, k)
    num, K = exact.shape[:2]
    ran = torch.full((num,), k, device=exact.device)
    if rule == "oracle":
        return exact[:, :, -1].amax(1) > 0, ran
    if rule == "vote":
        pick, at = majority(run["answer"][:, :, k - 1], conf[:, :, -1]), ran - 1
    elif rule == "residual":
        pick, at = run["residual"][:, :, k - 1].argmin(1), ran - 1
    elif rule == "q":
        pick, at = conf[:, :, -1].argmax(1), ran - 1
    elif rule == "first":  # each trajectory's first halting step (k if it never halts)
        step_no = torch.arange(1, k + 1, device=exact.device)
        first = torch.where(run["halt"][:, :, :k] > 0, step_no, k).amin(-1)  # (num, K)
        earliest = first.amin(1, keepdim=True)  # (num, 1)
        conf_then = conf.gather(2, (first - 1)[:, :, None])[:, :, 0]  # (num, K)
        pick = torch.where(first == earliest, conf_then, -math.inf).argmax(1)
        at, ran = earliest[:, 0] - 1, earliest[:, 0]
    else:
        raise ValueError(f"unknown selection rule {rule!r}; choose from {', '.join(SELECTIONS)}")
    right = exact.gather(1, pick[:, None, None].expand(num, 1, k))[:, 0]  # (num, k)
    return right.gather(1, at[:, None])[:, 0] > 0, ran


def test_time_scaling(model, test, cfg: dict, counts: list, autocast=nullcontext(),
                      trajectories=(1,), noise: float = 0.0, rules=SELECTIONS,
                      say=lambda line: None) -> list:
    """Accuracy against test-time compute, one row per (mode, step count, trajectories).

    One deterministic pass to max(counts) steps (more than training's N_sup if asked) gives the
    depth curves: fixed (the answer after exactly k steps) and adaptive (at the first step whose
    head says stop, at most k: what inference with learned halting returns, with its mean step
    count), and the latent's relative change per step (the fixed-point diagnostics). If
    `trajectories` asks for more than one, one more pass runs the largest K with `noise`, and
    each K asked for is scored on its first K trajectories (K independent noisy trajectories,
    whatever the others did) under every rule in `rules` and the oracle: net calls count K
    trajectories, wall_s is the time of the pass that ran them all. ARC: the rows of the largest
    K (and of one trajectory) also carry pass@1 and pass@2 of the voted answers. `say` gets one
    line per pass: its puzzles/s and trajectory-steps/s."""
    steps, calls, table = max(counts), model.net_calls(), []
    widths = sorted({K for K in trajectories if K > 1})
    for K, sigma in [(1, 0.0)] + ([(widths[-1], noise)] if widths else []):
        votes = test.votes(counts, adaptive=K == 1)
        t0 = time.time()
        run = run_on_test(model, test, cfg, steps, cfg["eval_limit"], votes, autocast, K, sigma)
        wall, num = time.time() - t0, len(run["exact"])
        say(f"pass | {num:,} puzzles x {K} trajector{'y' if K == 1 else 'ies'} x {steps} steps"
            f"{f', noise {sigma:g}' * bool(sigma)} in {fmt_time(wall)} | {num / wall:,.1f} "
            f"puzzles/s | {num * K * steps / wall:,.0f} trajectory-steps/s")
        for width in [1] if K == 1 else widths:
            first = {key: v[:, :width] for key, v in run.items() if key != "cell"}
            for k in sorted(counts):
                for mode in ("fixed", "adaptive") if K == 1 else (*rules, "oracle"):
                    # one trajectory: fixed is its answer at k, adaptive its first halt
                    rule = dict(fixed="q", adaptive="first").get(mode, mode)
                    right, ran = select(first, rule, k)
                    mean_steps = ran.float().mean().item()
                    row = dict(mode=mode, steps=k, trajectories=width, noise=sigma,
                               mean_steps=mean_steps, net_calls=mean_steps * width * calls,
                               exact=right.float().mean().item(), puzzles=num, wall_s=wall)
                    if votes is not None and width == K:  # ARC: the pooled answers
                        row.update(votes.passes("adaptive" if mode == "adaptive" else "fixed", k))
                    table.append(row)
        if K == 1:  # the fixed-point diagnostics of the deterministic trajectory, per step
            table.extend(dict(mode="residual_by_step", steps=k + 1, trajectories=1, noise=0.0,
                              mean_steps=k + 1, net_calls=(k + 1) * calls,
                              exact=run["exact"][:, 0, k].mean().item(),
                              residual=run["residual"][:, 0, k].mean().item(), puzzles=num,
                              wall_s=wall) for k in range(steps))
    return table


COLUMNS = ("mode", "steps", "trajectories", "noise", "mean_steps", "net_calls", "exact", "pass@1",
           "pass@2", "residual", "puzzles", "wall_s")


def write_scaling(table: list, out: str) -> str:
    """test_time_scaling's table as out/scaling.csv (empty cells where a column does not apply);
    its path."""
    path = os.path.join(out, "scaling.csv")
    number = lambda v: "" if v is None else v if isinstance(v, str) else \
        str(v) if isinstance(v, int) else f"{v:.6g}"
    with open(path, "w") as f:
        f.write(",".join(COLUMNS) + "\n")
        for r in table:
            f.write(",".join(number(r.get(c)) for c in COLUMNS) + "\n")
    return path


def report(table: list, trained: int, out: str, title: str) -> list:
    """Write scaling.csv and the three pictures; return the lines to print."""
    paths = [write_scaling(table, out)]
    for name, plot in (("scaling.png", plot_scaling), ("recursion_scaling.png",
                                                       plot_recursion_scaling),
                       ("fixed_point.png", plot_fixed_point)):
        if plot(table, trained, os.path.join(out, name), title):
            paths.append(name)
    lines = []
    for r in table:
        if r["mode"] == "residual_by_step":
            lines.append(f"fixed point | step {r['steps']:4d} | latent moved {r['residual']:.2e} "
                         f"(relative) | test exact {r['exact']:.4f}")
            continue
        lines.append(f"scaling | {r['mode']:8s} | at most {r['steps']:4d} steps | "
                     f"{r['trajectories']:3d} trajectories | mean {r['mean_steps']:7.2f} steps, "
                     f"{r['net_calls']:9.1f} net calls | test exact {r['exact']:.4f}" +
                     (f" | pass@1 {r['pass@1']:.4f} pass@2 {r['pass@2']:.4f}"
                      if "pass@2" in r else ""))
    return lines + [f"wrote {' and '.join(paths)} in {out}"]


def check_memory(cfg: dict, have: int, whose: str):
    """Refuse, before any work, --trajectories whose largest K makes one eval batch (its puzzles
    x K rows) need more memory than the device has (`have` bytes; train.py's device_probes says
    how much and whose). A row holds at its peak, in fp32, the states and the input (about 6
    tensors of tokens x hidden numbers) and the widest SwiGLU's 4 activations (its width:
    expansion x 2/3 of what it mixes, rounded up to 256, as trm.SwiGLU and hrm.SwiGLU build it);
    that is within 10% of the peak measured on a CPU, for TRM and HRM, attention and MLP-t."""
    if not cfg.get("trajectories"):
        return
    K = max(int(k) for k in str(cfg["trajectories"]).split(","))
    m = cfg["model_config"]
    D, L = m["hidden_size"], m["puzzle_emb_len"] + m["seq_len"]
    with torch.device("meta"):  # the widths only: nothing is allocated
        wide = max(trm.SwiGLU(d, m["expansion"]).down_proj.in_features / d
                   for d in ([D, L] if m["mlp_t"] else [D]))
    tensors = 6 + 4 * wide
    row = 4 * L * D * tensors  # bytes
    # a batch holds --eval-batch-size puzzles, fewer when --eval-limit asks for fewer (but on
    # ARC, which votes over its whole test split)
    B = cfg["eval_batch_size"]
    if cfg["eval_limit"] and data.TASKS[cfg["task"]]["kind"] != "arc":
        B = min(B, cfg["eval_limit"])
    if B * K * row <= have:
        return
    fit = int(have // row)  # rows that fit at once
    fix = f"lower --eval-batch-size to {fit // K}" if fit >= K else \
        f"lower K to {fit:,} and --eval-batch-size to 1"
    fail(f"--trajectories {K} runs {B * K:,} rows at once ({B} puzzles per eval batch x {K}), "
         f"about {B * K * row / 2**30:,.0f} GiB (a row holds about {tensors:.0f} tensors of {L} "
         f"tokens x {D} numbers at its peak), more than {whose} {have / 2**30:.0f} GiB: {fix}")


def eval_only(run) -> list:
    """--eval-only: accuracy against test-time compute on the --resume (or --official) model, up
    to --eval-steps supervision steps (default: powers of 2 up to twice the trained maximum),
    with --trajectories K (each K > 1 one more pass, --noise sigma) under --select's rules;
    writes scaling.csv, scaling.png, recursion_scaling.png and fixed_point.png."""
    cfg, trained = run.cfg, run.model.max_steps
    counts = [int(k) for k in cfg["eval_steps"].split(",")] if cfg.get("eval_steps") else \
        [2 ** i for i in range(int(math.log2(2 * trained)) + 1)]
    trajectories = [int(k) for k in str(cfg.get("trajectories") or 1).split(",")]
    rules = SELECTIONS if cfg.get("select") in (None, "all") else (cfg["select"],)
    table = test_time_scaling(run.eval_fn, run.test, cfg, counts, run.autocast, trajectories,
                              cfg.get("noise") or 0.0, rules, say=print)
    if parallel.is_main():
        title = f"{cfg['model']} on {cfg['task']}, step {run.step}" + \
            " (GENERATED data)" * run.train.generated
        for line in report(table, trained, cfg["out"], title):
            print(line)
        print(f"scored {table[0]['puzzles']:,} of the {len(run.test):,} test examples" +
              " (--eval-limit)" * (table[0]["puzzles"] < len(run.test)) +
              f"; the noise of --trajectories from --seed {cfg['seed']}" * bool(cfg.get("noise")))
    return table
