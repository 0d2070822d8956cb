"""Scoring a model on a test split: every test puzzle runs a number of supervision steps from a
fresh state (run_on_test, the one evaluation loop, which can also run K trajectories per puzzle
for lib/scaling.py). evaluate() gives what the official code reports (exact accuracy after all
N_sup steps) and the accuracy after each step; solve() and solve_mode() are --solve."""
import math
from contextlib import nullcontext

import torch

import data
from lib import parallel
from lib.config import fail
from puzzles import csv_format


def q_halt_of(q: torch.Tensor) -> torch.Tensor:
    return q if q.dim() == 1 else q[:, 0]  # TRM gives q_halt (B,); HRM (halt, continue) (B, 2)


def confidence(q: torch.Tensor) -> torch.Tensor:
    """The halting head's confidence that the answer is right (B,): TRM's q_halt; HRM's
    Q(halt) - Q(continue), whose sign is its halting rule."""
    return q if q.dim() == 1 else q[:, 0] - q[:, 1]


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash, elementwise on int64 tensors: two xorshift-multiply rounds. Every
    value stays below 2**63 (32-bit values times 31-bit odd constants), so nothing overflows."""
    x = x & 0xFFFFFFFF  # a new tensor: the rounds below work on it in place (fewer allocations)
    x ^= x >> 16
    x.mul_(0x7FEB352D).bitwise_and_(0xFFFFFFFF)
    x ^= x >> 15
    x.mul_(0x5BD1E995).bitwise_and_(0xFFFFFFFF)
    x ^= x >> 16
    return x


def trajectory_noise(seed: int, puzzles: torch.Tensor, trajectories: torch.Tensor, step: int,
                     shape: tuple) -> torch.Tensor:
    """Standard normal noise (R, *shape) for R rows, row r being trajectory trajectories[r] of
    test puzzle puzzles[r] at supervision step `step`. Counter-based, like JAX's random keys: each
    number is a hash of (seed, puzzle, trajectory, step, its index), so a trajectory's noise is the
    same whatever batch, rank or number of trajectories it runs with (a torch.Generator's stream
    would depend on all three). Box-Muller turns two hashed uniforms into one normal."""
    seed = torch.tensor(seed, device=puzzles.device)
    key = _mix(_mix(_mix(_mix(seed) ^ puzzles.long()) ^ trajectories.long()) ^ step)  # (R,)
    count = math.prod(shape)
    index = torch.arange(2 * count, device=puzzles.device)
    # each index hashed once (offset by the golden ratio's bits, so that index 0 is no zero key),
    # then mixed with each row's key
    bits = _mix(key[:, None] ^ _mix(index + 0x9E3779B9)[None])  # (R, 2 * count)
    u = ((bits >> 8).float() + 0.5) / 2**24  # uniform in (0, 1), never 0: log(u) is finite
    u1, u2 = u[:, :count], u[:, count:]
    return ((-2 * u1.log()).sqrt() * torch.cos(2 * math.pi * u2)).view(len(key), *shape)


def perturb(state: tuple, noise: float, eps: torch.Tensor) -> tuple:
    """The state with Gaussian noise eps (standard normal, the latent's shape) on its latent (the
    second tensor: TRM's z, HRM's z_L), scaled by noise times the latent's root mean square per
    token."""
    answer, z = state  # (B, L, D) each
    rms = z.float().pow(2).mean(-1, keepdim=True).sqrt()  # (B, L, 1)
    return answer, z + (noise * rms * eps).to(z.dtype)


def relative_change(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """||new - old|| / ||old|| per row (B,): how far one step moved the latent."""
    return (new - old).float().flatten(1).norm(dim=1) / old.float().flatten(1).norm(dim=1)


def fingerprint(answers: torch.Tensor) -> torch.Tensor:
    """One 64-bit number per answer (answers (..., S) tokens -> (...)): equal answers get equal
    numbers, different ones collide with probability about 2^-64 (random weights, wrapping sums),
    so K answers compare in (K, K) instead of (K, K, S)."""
    weights = torch.randint(-2**62, 2**62, (answers.shape[-1],), device=answers.device,
                            generator=torch.Generator(answers.device).manual_seed(0))
    return (answers.long() * weights).sum(-1)


def majority(prints: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """Index (B,) of the trajectory whose answer (prints (B, K): fingerprints) most trajectories
    give; among equally common answers, the one with the most confident head (conf (B, K))."""
    count = (prints[:, :, None] == prints[:, None, :]).sum(-1)  # (B, K) trajectories agreeing
    return (count + 0.5 * torch.sigmoid(conf)).argmax(1)  # the sigmoid only breaks ties


@torch.no_grad()
def run_on_test(model, test, cfg: dict, steps: int, limit: int = 0, votes=None,
                autocast=nullcontext(), K: int = 1, noise: float = 0.0,
                keep_answers: bool = False) -> dict:
    """The first `limit` test examples (0 = all; a task that votes, ARC, always runs all), each
    as K trajectories (lib/scaling.py; one unless asked) of `steps` supervision steps from a
    fresh state, in one batch of B*K rows; with noise, Gaussian noise on the latent before every
    step (perturb). Returns, on the device, per example, trajectory and step ((num, K, steps)):
    exact (is its answer right), halt (does its head say stop), conf (its confidence), residual
    (relative change of the latent over that step, from the model's output of the step before,
    without this step's noise, to its new output), answer (its fingerprint, for votes); cell: the
    cell accuracy after the last step; with keep_answers, answers: the answers themselves
    ((num, K, steps, S) tokens, for pictures of a few puzzles). `votes` (the task's, test.votes)
    receives every step's answers, every trajectory's as one more vote. Under torchrun each rank
    runs every world()-th batch, and every rank gets the whole result."""
    model.eval()
    device = cfg["device"]
    num = len(test) if votes is not None else min(limit or len(test), len(test))
    out = {k: torch.zeros(num, K, steps, device=device) for k in ("exact", "halt", "conf",
                                                                 "residual")}
    out["answer"] = torch.zeros(num, K, steps, dtype=torch.long, device=device)
    if keep_answers:
        out["answers"] = torch.zeros(num, K, steps, test.seq_len, dtype=torch.uint8, device=device)
    cell = torch.zeros((), device=device)
    # --eval-batch-size counts rows: B puzzles of K trajectories each. A batch K times larger
    # would run its matmuls no faster per row, and its tensors would fall out of the caches
    puzzles_per_batch = max(1, cfg["eval_batch_size"] // K)
    for b, batch in enumerate(test.eval_batches(puzzles_per_batch, limit)):
        if b % parallel.world() != parallel.rank():
            continue
        rows, inputs, labels, ids = (t.to(device) for t in batch)  # (B,), (B, S), (B, S), (B,)
        B = len(rows)
        # a puzzle's K trajectories sit next to each other: row b * K + j is trajectory j
        inputs, labels, ids = (t.repeat_interleave(K, 0) for t in (inputs, labels, ids))
        puzzle, trajectory = rows.repeat_interleave(K), torch.arange(K, device=device).repeat(B)
        state = model.initial_state(B * K)
        for k in range(steps):
            before = state[1]  # the latent the model produced in the last step, before any noise
            if noise:
                eps = trajectory_noise(cfg.get("seed", 0), puzzle, trajectory, k,
                                       state[1].shape[1:])
                state = perturb(state, noise, eps)
            with autocast:
                new, logits, q = model(state, inputs, ids)
            right, cells = data.scores(logits, labels)  # (B*K,) each
            halt, conf = model.wants_to_halt(q), confidence(q).float()
            # the residual is measured from the latent before its noise: a model that pulls a
            # noised latent back to where it was has not moved it, while measured from the noised
            # latent that pull would count the whole noise (about sigma / sqrt(1 + sigma^2), on any
            # trajectory)
            out["residual"][rows, :, k] = relative_change(new[1], before).view(B, K)
            state = new
            for key, value in (("exact", right), ("halt", halt), ("conf", conf)):
                out[key][rows, :, k] = value.float().view(B, K)
            out["answer"][rows, :, k] = fingerprint(logits.argmax(-1)).view(B, K)
            if keep_answers:
                out["answers"][rows, :, k] = logits.argmax(-1).to(torch.uint8).view(B, K, -1)
            if votes is not None:
                votes.add(k + 1, rows.repeat_interleave(K).cpu(), logits, q_halt_of(q), halt)
        cell += cells.sum() / K
    model.train()
    if votes is not None:
        votes.merge(parallel.gather_objects)
    out = {key: parallel.sum_over_ranks({key: value})[key] for key, value in out.items()}
    out["cell"] = parallel.sum_over_ranks({"cell": cell})["cell"].item() / num
    return out


def evaluate(model, test, cfg: dict, limit: int = 0, autocast=nullcontext()) -> dict:
    """Test exact accuracy after all N_sup steps (what the official code reports), and per step.
    A task that votes (ARC) adds its voted numbers (pass@K) and files (the Kaggle submission)."""
    K = model.max_steps
    votes = test.votes([K])
    run = run_on_test(model, test, cfg, K, limit, votes, autocast)
    by_step = run["exact"][:, 0].mean(0).tolist()
    return dict(exact=by_step[-1], cell=run["cell"], puzzles=len(run["exact"]),
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


@torch.no_grad()
def solve(model, inputs: torch.Tensor, steps: int = 0) -> dict:
    """Run (B, S) puzzles from a fresh state for `steps` supervision steps (0 = the trained
    maximum, as evaluation does): the answer after each step, (steps, B, S) tokens, the halting
    logits (steps, B) (HRM: (steps, B, 2), halt and continue) and whether the halting head wants to
    stop there, (steps, B). For notebooks and --solve."""
    model.eval()
    state = model.initial_state(len(inputs))
    ids = torch.zeros(len(inputs), dtype=torch.long, device=inputs.device)
    answers, qs, halt = [], [], []
    for _ in range(steps or model.max_steps):
        state, logits, q = model(state, inputs, ids)
        answers.append(logits.argmax(-1))
        qs.append(q)
        halt.append(model.wants_to_halt(q))
    model.train()
    return dict(answers=torch.stack(answers), q=torch.stack(qs), halt=torch.stack(halt))


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
