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
import parallel
from config import fail
from puzzles import csv_format
from report import plot_scaling


@torch.no_grad()
def run_on_test(model, test, cfg: dict, steps: int, limit: int = 0, autocast=nullcontext()):
    """The first `limit` test puzzles (0 = all), each run for `steps` supervision steps. Returns,
    per puzzle and step, whether its answer is exactly right and whether the halting head wants to
    stop ((num, steps) bools, kept on the device: no host sync per step), and the cell accuracy
    after the last step. Under torchrun each rank runs its share and every rank gets them all."""
    model.eval()
    num = min(limit or len(test.inputs), len(test.inputs))
    mine = parallel.my_rows(num)
    exact = torch.zeros(len(mine), steps, dtype=torch.bool, device=cfg["device"])
    wants = torch.zeros(len(mine), steps, dtype=torch.bool, device=cfg["device"])
    cell = torch.zeros((), device=cfg["device"])
    for start in range(0, len(mine), cfg["eval_batch_size"]):
        rows = slice(start, min(len(mine), start + cfg["eval_batch_size"]))
        puzzles = slice(mine.start + rows.start, mine.start + rows.stop)
        inputs = test.inputs[puzzles].to(cfg["device"])
        labels = test.labels[puzzles].to(cfg["device"])
        ids = torch.zeros(len(inputs), dtype=torch.long, device=cfg["device"])
        state = model.initial_state(len(inputs))
        for k in range(steps):
            with autocast:
                state, logits, q = model(state, inputs, ids)
            correct = logits.argmax(-1) == labels  # (B, S)
            exact[rows, k] = correct.all(-1)
            wants[rows, k] = model.wants_to_halt(q)
        cell += correct.float().mean(-1).sum()
    model.train()
    cell = parallel.sum_over_ranks({"cell": cell})["cell"]
    return parallel.gather_rows(exact, num), parallel.gather_rows(wants, num), cell.item() / num


def evaluate(model, test, cfg: dict, limit: int = 0, autocast=nullcontext()) -> dict:
    """Test exact accuracy after all N_sup steps (what the official code reports), and per step."""
    exact, _, cell = run_on_test(model, test, cfg, model.max_steps, limit, autocast)
    by_step = exact.float().mean(0).tolist()
    return dict(exact=by_step[-1], cell=cell, puzzles=len(exact),
                exact_by_step=[round(a, 4) for a in by_step])


def test_time_scaling(model, test, cfg: dict, counts: list, autocast=nullcontext()) -> list:
    """Accuracy vs test-time compute. Every test puzzle runs max(counts) supervision steps (more
    than training's N_sup if asked); from that one pass come two curves:
    fixed: the answer after exactly k steps;
    adaptive: the answer at the first step whose halting head says stop (at most k): what
    inference with learned halting would return, with its mean number of steps."""
    K = max(counts)
    exact, wants, _ = run_on_test(model, test, cfg, K, cfg["eval_limit"], autocast)
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
    return table


def write_scaling(table: list, out: str) -> str:
    """test_time_scaling's table as out/scaling.csv, one row per (mode, step count); its path."""
    path = os.path.join(out, "scaling.csv")
    with open(path, "w") as f:
        f.write("mode,steps,mean_steps,net_calls,exact,puzzles\n")
        for r in table:
            f.write(f"{r['mode']},{r['steps']},{r['mean_steps']:.3f},{r['net_calls']:.1f},"
                    f"{r['exact']:.4f},{r['puzzles']}\n")
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
              f"{r['exact']:.4f}")
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
