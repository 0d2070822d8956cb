"""Scoring a model on a test split: every test puzzle runs a number of supervision steps from a
fresh state. evaluate() gives what the official code reports (exact accuracy after all N_sup
steps) and the accuracy after each step; test_time_scaling() runs longer than training did and
compares fixed step counts with the halting head's choice. eval_only() and solve_mode() are
train.py's --eval-only and --solve."""
import math
import os
from contextlib import nullcontext

import numpy as np
import torch

import data
import parallel
from config import fail
from puzzles import arc, csv_format
from report import plot_scaling


IGNORE = 0  # the official ignore_label_id: PAD labels (ARC's canvas around a grid) carry no loss
# and no score. Sudoku and maze labels never hold it: every one of their cells counts.


def token_scores(logits: torch.Tensor, labels: torch.Tensor) -> tuple:
    """Per puzzle (B,): whether every labelled cell is right, and the accuracy over labelled
    cells; and the (B, S) mask of labelled cells."""
    valid = labels != IGNORE  # (B, S)
    right = (logits.argmax(-1) == labels) & valid  # (B, S)
    count = valid.sum(-1)  # (B,)
    return right.sum(-1) == count, right.sum(-1) / count.clamp(min=1), valid


def q_halt_of(q: torch.Tensor) -> torch.Tensor:
    return q if q.dim() == 1 else q[:, 0]  # TRM gives q_halt (B,); HRM (halt, continue) (B, 2)


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
            exact[rows, k], right, _ = token_scores(logits, labels)
            wants[rows, k] = model.wants_to_halt(q)
        cell += right.sum()
    model.train()
    cell = parallel.sum_over_ranks({"cell": cell})["cell"]
    return parallel.gather_rows(exact, num), parallel.gather_rows(wants, num), cell.item() / num


@torch.no_grad()
def run_on_arc(model, test, cfg: dict, steps: int, scored, adaptive: bool = False,
               autocast=nullcontext()) -> tuple:
    """ARC: every test example (each augmented copy of each test input, with its puzzle id) runs
    `steps` supervision steps from a fresh state; after each step k in `scored` the answers and
    q_halt are voted into fixed[k] (arc.Votes). With adaptive, halted[k] gets each example's
    answer at the first step whose halting head says stop (at most k). Returns (fixed, halted,
    exact: the fraction of test examples exactly right after each step, the cell accuracy after
    the last). Under torchrun each rank runs every world()-th batch; all get all the votes."""
    model.eval()
    plan, device = test.plan, cfg["device"]
    fixed, halted = ({k: arc.Votes(plan) for k in scored} for _ in range(2))
    exact, cell = torch.zeros(steps, device=device), torch.zeros((), device=device)
    for b, rows in enumerate(arc.test_batches(plan.splits["test"], cfg["eval_batch_size"])):
        if b % parallel.world() != parallel.rank():
            continue
        inputs, labels, ids = (torch.from_numpy(a).to(device) for a in
                               arc.examples(plan, "test", rows))
        real = torch.from_numpy(rows >= 0).to(device)  # (B,) not a padding row
        state, stopped = model.initial_state(len(inputs)), np.zeros(len(rows), bool)
        for k in range(1, steps + 1):
            with autocast:
                state, logits, q = model(state, inputs, ids)
            right, cells, _ = token_scores(logits, labels)
            exact[k - 1] += (right & real).sum()
            stops = model.wants_to_halt(q).cpu().numpy() & ~stopped if adaptive else stopped & False
            if k in fixed or stops.any():
                preds, q_halt = logits.argmax(-1).cpu().numpy(), q_halt_of(q).float().cpu().numpy()
                if k in fixed:
                    fixed[k].add(rows, preds, q_halt)
                    if adaptive:
                        halted[k].add(np.where(stopped, -1, rows), preds, q_halt)
                for j in (j for j in scored if j > k):  # these stop here, for every later count
                    halted[j].add(np.where(stops, rows, -1), preds, q_halt)
            stopped = stopped | stops
        cell += (cells * real).sum()
    model.train()
    for votes in (*fixed.values(), *halted.values()):
        pools, votes.pools = parallel.gather_objects(votes.pools), {}
        votes.merge(pools)
    sums = parallel.sum_over_ranks({"cell": cell, **{str(k): e for k, e in enumerate(exact)}})
    n = len(test)
    return fixed, halted, [sums[str(k)].item() / n for k in range(steps)], sums["cell"].item() / n


def evaluate_arc(model, test, cfg: dict, autocast=nullcontext()) -> dict:
    """ARC (spec arc.md §3): all N_sup steps, the answers voted over the augmented copies;
    pass@K of the final step with both credit rules (TRM: per test input, the paper's number;
    HRM: all of a task's test inputs), the Kaggle submission, and per-example exact accuracy."""
    K = model.max_steps
    fixed, _, exact, cell = run_on_arc(model, test, cfg, K, [K], autocast=autocast)
    passes, sub, _ = fixed[K].score()
    return dict(exact=exact[-1], cell=cell, puzzles=len(test),
                exact_by_step=[round(a, 4) for a in exact], pass_at=passes, submission=sub)


def evaluate(model, test, cfg: dict, limit: int = 0, autocast=nullcontext()) -> dict:
    """Test exact accuracy after all N_sup steps (what the official code reports), and per step;
    ARC: evaluate_arc, always on the whole test split (a vote needs every copy)."""
    if test.kind == "arc":
        return evaluate_arc(model, test, cfg, autocast)
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
