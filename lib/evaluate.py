"""Scoring a model on a test split: every test puzzle runs a number of supervision steps from a
fresh state. evaluate() gives what the official code reports (exact accuracy after all N_sup
steps) and the accuracy after each step; test_time_scaling() runs longer than training did and
compares fixed step counts with the halting head's choice. eval_only() and solve_mode() are
train.py's --eval-only and --solve."""
import math
import os
from contextlib import nullcontext

import torch

import data
from lib import parallel
from lib.config import fail
from puzzles import csv_format
from lib.report import plot_scaling


def q_halt_of(q: torch.Tensor) -> torch.Tensor:
    return q if q.dim() == 1 else q[:, 0]  # TRM gives q_halt (B,); HRM (halt, continue) (B, 2)


@torch.no_grad()
def run_on_test(model, test, cfg: dict, steps: int, limit: int = 0, votes=None,
                autocast=nullcontext()):
    """The first `limit` test examples (0 = all; a task that votes, ARC, always runs all), each
    for `steps` supervision steps from a fresh state. Returns, per example and step, whether its
    answer is exactly right and whether the halting head wants to stop ((num, steps) bools, kept
    on the device: no host sync per step), and the cell accuracy after the last step. `votes`
    (the task's, test.votes) receives every step's answers. Under torchrun each rank runs every
    world()-th batch, and every rank gets the whole result."""
    model.eval()
    device = cfg["device"]
    num = len(test) if votes is not None else min(limit or len(test), len(test))
    exact = torch.zeros(num, steps, device=device)
    wants, cell = torch.zeros_like(exact), torch.zeros((), device=device)
    for b, batch in enumerate(test.eval_batches(cfg["eval_batch_size"], limit)):
        if b % parallel.world() != parallel.rank():
            continue
        rows, inputs, labels, ids = (t.to(device) for t in batch)  # (B,), (B, S), (B, S), (B,)
        state = model.initial_state(len(inputs))
        for k in range(1, steps + 1):
            with autocast:
                state, logits, q = model(state, inputs, ids)
            right, cells = data.scores(logits, labels)  # (B,), (B,)
            halt = model.wants_to_halt(q)  # (B,)
            exact[rows, k - 1], wants[rows, k - 1] = right.float(), halt.float()
            if votes is not None:
                votes.add(k, rows.cpu(), logits, q_halt_of(q), halt)
        cell += cells.sum()
    model.train()
    if votes is not None:
        votes.merge(parallel.gather_objects)
    sums = parallel.sum_over_ranks(dict(exact=exact, wants=wants))
    cell = parallel.sum_over_ranks({"cell": cell})["cell"]
    return sums["exact"] > 0, sums["wants"] > 0, cell.item() / num


def evaluate(model, test, cfg: dict, limit: int = 0, autocast=nullcontext()) -> dict:
    """Test exact accuracy after all N_sup steps (what the official code reports), and per step.
    A task that votes (ARC) adds its voted numbers (pass@K) and files (the Kaggle submission)."""
    K = model.max_steps
    votes = test.votes([K])
    exact, _, cell = run_on_test(model, test, cfg, K, limit, votes, autocast)
    by_step = exact.float().mean(0).tolist()
    return dict(exact=by_step[-1], cell=cell, puzzles=len(exact),
                exact_by_step=[round(a, 4) for a in by_step],
                **(votes.result(K) if votes is not None else {}))


def eval_line(step: int, result: dict, took: str) -> str:
    """The log line of an evaluation (report.read_evals reads it back: its score, its time)."""
    if "pass_at" not in result:
        return (f"eval {step:6d} | test exact {result['exact']:.4f} | cell {result['cell']:.4f} | "
                f"{result['puzzles']} puzzles | {took} | exact after each supervision step "
                f"{result['exact_by_step']}")
    p = result["pass_at"]  # a task that votes (ARC): pass@2, credit per test input, the paper's
    return (f"eval {step:6d} | test pass@2 {p['trm'][2]:.4f} | pass@1 {p['trm'][1]:.4f} | "
            f"{result['puzzles']} copies voted | {took} | pass@K {p['trm']} | all of a task's "
            f"inputs right: pass@2 {p['hrm'][2]:.4f} | exact per copy after each step "
            f"{result['exact_by_step']}")


def test_time_scaling(model, test, cfg: dict, counts: list, autocast=nullcontext()) -> list:
    """Accuracy vs test-time compute. Every test puzzle runs max(counts) supervision steps (more
    than training's N_sup if asked); from that one pass come two curves:
    fixed: the answer after exactly k steps;
    adaptive: the answer at the first step whose halting head says stop (at most k): what
    inference with learned halting would return, with its mean number of steps."""
    K = max(counts)
    votes = test.votes(counts, adaptive=True)  # ARC: the per-copy answers' votes, pass@1 and @2
    exact, wants, _ = run_on_test(model, test, cfg, K, cfg["eval_limit"], votes, autocast)
    num = len(exact)
    calls, table = model.net_calls(), []
    step_no = torch.arange(1, K + 1, device=exact.device)
    for k in sorted(counts):
        table.append(dict(mode="fixed", steps=k, mean_steps=k, net_calls=k * calls,
                          exact=exact[:, k - 1].float().mean().item(), puzzles=num))
        # first step at which the head says stop, or k
        stop = torch.where(wants[:, :k], step_no[:k], k).min(-1).values  # (num,)
        right = exact.gather(1, (stop - 1)[:, None]).squeeze(1)
        table.append(dict(mode="adaptive", steps=k, mean_steps=stop.float().mean().item(),
                          net_calls=stop.float().mean().item() * calls,
                          exact=right.float().mean().item(), puzzles=num))
    if votes is not None:
        for r in table:
            r.update(votes.passes(r["mode"], r["steps"]))
    return table


def write_scaling(table: list, out: str) -> str:
    """test_time_scaling's table as out/scaling.csv, one row per (mode, step count); its path."""
    path = os.path.join(out, "scaling.csv")
    passes = [k for k in ("pass@1", "pass@2") if k in table[0]]  # ARC: the voted answers
    with open(path, "w") as f:
        f.write(",".join(["mode", "steps", "mean_steps", "net_calls", "exact", *passes,
                          "puzzles"]) + "\n")
        for r in table:
            f.write(f"{r['mode']},{r['steps']},{r['mean_steps']:.3f},{r['net_calls']:.1f},"
                    f"{r['exact']:.4f}," + "".join(f"{r[k]:.4f}," for k in passes) +
                    f"{r['puzzles']}\n")
    return path


@torch.no_grad()
def solve(model, inputs: torch.Tensor, steps: int = 0) -> dict:
    """Run (B, S) puzzles from a fresh state for `steps` supervision steps (0 = the trained
    maximum, as evaluation does): the answer after each step, (steps, B, S) tokens, and whether the
    halting head wants to stop there, (steps, B). For notebooks and --solve."""
    model.eval()
    state = model.initial_state(len(inputs))
    ids = torch.zeros(len(inputs), dtype=torch.long, device=inputs.device)
    answers, halt = [], []
    for _ in range(steps or model.max_steps):
        state, logits, q = model(state, inputs, ids)
        answers.append(logits.argmax(-1))
        halt.append(model.wants_to_halt(q))
    model.train()
    return dict(answers=torch.stack(answers), halt=torch.stack(halt))


def print_solution(puzzles, inputs: torch.Tensor, out: dict):
    """Print solve()'s result: each puzzle, then its answer after every supervision step with the
    cells that changed and the halting head's verdict, and whether the last answer obeys the rules
    (Sudoku: a valid grid that keeps the givens; maze: a shortest S-G path)."""
    family, cols = data.FAMILIES[puzzles.kind], puzzles.grid[1]
    char = lambda t: repr(family.CHARS[t - 1]) if 1 <= t <= len(family.CHARS) else "'?'"
    answers, halt = out["answers"].cpu(), out["halt"].cpu()
    for b, x in enumerate(inputs.cpu()):
        print(f"\npuzzle {b + 1}:\n{data.decode(puzzles, x)}")
        before = x
        for k, now in enumerate(answers[:, b]):
            changed = torch.nonzero(now != before).flatten().tolist()
            shown = ", ".join(f"r{c // cols + 1}c{c % cols + 1} {char(before[c])}->{char(now[c])}"
                              for c in changed[:8]) + ", ..." * (len(changed) > 8)
            print(f"\nstep {k + 1} | halting head: {'halt' if halt[k, b] else 'go on'} | "
                  f"{len(changed)} cells changed{': ' + shown if changed else ''}")
            print(data.decode(puzzles, now))
            before = now
        problem = family.problem(puzzles.grid, x[None].numpy(), answers[-1, b][None].numpy())
        print(f"\nanswer: {'valid' if problem is None else 'NOT valid: ' + problem[1]}")


# ---- the modes train.py runs on a checkpoint (run: train.Run)

def eval_only(run) -> list:
    """Accuracy against supervision steps, fixed and with adaptive halting, up to --eval-steps
    (default: powers of 2 up to twice the trained maximum); writes scaling.csv and scaling.png."""
    cfg, trained = run.cfg, run.model.max_steps
    counts = [int(k) for k in cfg["eval_steps"].split(",")] if cfg.get("eval_steps") else \
        [2 ** i for i in range(int(math.log2(2 * trained)) + 1)]
    table = test_time_scaling(run.eval_fn, run.test, cfg, counts, run.autocast)
    if not parallel.is_main():
        return table
    path = write_scaling(table, cfg["out"])
    plot_scaling(table, trained, os.path.join(cfg["out"], "scaling.png"),
                 f"{cfg['model']} on {cfg['task']}, step {run.step}" +
                 " (GENERATED data)" * run.train.generated)
    for r in table:
        print(f"scaling | {r['mode']:8s} | at most {r['steps']:4d} steps | mean "
              f"{r['mean_steps']:7.2f} steps, {r['net_calls']:8.1f} net calls | test exact "
              f"{r['exact']:.4f}" + (f" | pass@1 {r['pass@1']:.4f} pass@2 {r['pass@2']:.4f}"
                                     if "pass@2" in r else ""))
    print(f"wrote {path} and scaling.png")
    return table


def solve_mode(run) -> dict:
    """Run the --solve puzzles and print each one's answer after every supervision step."""
    try:
        inputs = csv_format.read_grids(run.cfg["solve"], data.FAMILIES[run.test.kind],
                                       run.test.inputs.shape[1])
    except ValueError as e:
        fail(f"--solve {e}")
    with run.autocast:
        out = solve(run.eval_fn, inputs.to(run.device))
    print_solution(run.test, inputs, out)
    return out
