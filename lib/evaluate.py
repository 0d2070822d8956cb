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
from lib import parallel
from lib.config import fail
from puzzles import arc, arc_score, csv_format
from lib.report import plot_scaling


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
            exact[rows, k], cells, _ = token_scores(logits, labels)
            wants[rows, k] = model.wants_to_halt(q)
        cell += cells.sum()
    model.train()
    cell = parallel.sum_over_ranks({"cell": cell})["cell"]
    return parallel.gather_rows(exact, num), parallel.gather_rows(wants, num), cell.item() / num


@torch.no_grad()
def run_on_arc(model, test, cfg: dict, steps: int, scored, adaptive: bool = False,
               autocast=nullcontext()) -> tuple:
    """ARC: every test example (each augmented copy of each test input, with its puzzle id) runs
    `steps` supervision steps from a fresh state; after each step k in `scored` the answers and
    q_halt are voted into fixed[k] (arc_score.Votes). With adaptive, halted[k] gets each example's
    answer at the first step whose halting head says stop (at most k). Returns exact and wants
    as run_on_test does, per example and step, the cell accuracy after the last step, fixed and
    halted. Under torchrun each rank runs every world()-th batch; every rank gets it all."""
    model.eval()
    plan, device = test.plan, cfg["device"]
    fixed, halted = ({k: arc_score.Votes(plan) for k in scored} for _ in range(2))
    exact = torch.zeros(len(test), steps, device=device)
    wants, cell = torch.zeros_like(exact), torch.zeros((), device=device)
    for b, rows in enumerate(arc.test_batches(plan.splits["test"], cfg["eval_batch_size"])):
        if b % parallel.world() != parallel.rank():
            continue
        inputs, labels, ids = (torch.from_numpy(a).to(device) for a in
                               arc.examples(plan, "test", rows))
        real = rows >= 0  # (B,) not a padding row
        state, stopped = model.initial_state(len(inputs)), np.zeros(len(rows), bool)
        for k in range(1, steps + 1):
            with autocast:
                state, logits, q = model(state, inputs, ids)
            right, cells, _ = token_scores(logits, labels)
            halt = model.wants_to_halt(q)  # (B,)
            exact[rows[real], k - 1] = right[real].float()
            wants[rows[real], k - 1] = halt[real].float()
            # the examples whose halting head says stop for the first time here
            stops = halt.cpu().numpy() & real & ~stopped if adaptive else np.zeros_like(real)
            if k in fixed or stops.any():
                preds, q_halt = logits.argmax(-1).cpu().numpy(), q_halt_of(q).float().cpu().numpy()
                if k in fixed:
                    fixed[k].add(rows, preds, q_halt)
                    if adaptive:
                        halted[k].add(np.where(stopped, -1, rows), preds, q_halt)
                for j in (j for j in scored if j > k):  # these stop here, for every later count
                    halted[j].add(np.where(stops, rows, -1), preds, q_halt)
            stopped = stopped | stops
        cell += cells[real].sum()
    model.train()
    for votes in (*fixed.values(), *halted.values()):
        pools, votes.pools = parallel.gather_objects(votes.pools), {}
        votes.merge(pools)
    sums = parallel.sum_over_ranks(dict(exact=exact, wants=wants))
    cell = parallel.sum_over_ranks({"cell": cell})["cell"].item() / len(test)
    return sums["exact"] > 0, sums["wants"] > 0, cell, fixed, halted


def evaluate_arc(model, test, cfg: dict, autocast=nullcontext()) -> dict:
    """ARC (spec arc.md §3): all N_sup steps, the answers voted over the augmented copies;
    pass@K of the final step with both credit rules (TRM: per test input, the paper's number;
    HRM: all of a task's test inputs), the Kaggle submission, and exact accuracy per copy."""
    K = model.max_steps
    exact, _, cell, fixed, _ = run_on_arc(model, test, cfg, K, [K], autocast=autocast)
    passes, sub, _ = fixed[K].score()
    by_step = exact.float().mean(0).tolist()
    return dict(exact=by_step[-1], cell=cell, puzzles=len(test),
                exact_by_step=[round(a, 4) for a in by_step], pass_at=passes, submission=sub)


def evaluate(model, test, cfg: dict, limit: int = 0, autocast=nullcontext()) -> dict:
    """Test exact accuracy after all N_sup steps (what the official code reports), and per step;
    ARC: evaluate_arc, always on the whole test split (a vote needs every copy)."""
    if test.kind == "arc":
        return evaluate_arc(model, test, cfg, autocast)
    exact, _, cell = run_on_test(model, test, cfg, model.max_steps, limit, autocast)
    by_step = exact.float().mean(0).tolist()
    return dict(exact=by_step[-1], cell=cell, puzzles=len(exact),
                exact_by_step=[round(a, 4) for a in by_step])


def eval_line(step: int, result: dict, took: str) -> str:
    """The log line of an evaluation (report.read_evals reads it back: its score, its time)."""
    if "pass_at" not in result:
        return (f"eval {step:6d} | test exact {result['exact']:.4f} | cell {result['cell']:.4f} | "
                f"{result['puzzles']} puzzles | {took} | exact after each supervision step "
                f"{result['exact_by_step']}")
    p = result["pass_at"]  # ARC: the voted answers; pass@2, credit per test input, the paper's
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
    if test.kind == "arc":  # the per-copy answers, and their votes: pass@1 and pass@2
        exact, wants, _, fixed, halted = run_on_arc(model, test, cfg, K, counts, True, autocast)
        passes = {("fixed", k): fixed[k].score(ks=(1, 2))[0]["trm"] for k in counts}
        passes.update({("adaptive", k): halted[k].score(ks=(1, 2))[0]["trm"] for k in counts})
    else:
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
    if test.kind == "arc":
        for r in table:
            r["pass@1"], r["pass@2"] = passes[r["mode"], r["steps"]].values()
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
