"""ARC's evaluator (evaluators/arc.py of SamsungSAILMontreal/TinyRecursiveModels; HRM's credit
rule from sapientinc/HRM's arc_eval.ipynb): every augmented copy of a test input answers, each
answer is cropped at its EOS border and mapped back to the task's frame, equal answers are pooled
and ranked by (votes, mean sigmoid(q_halt)), and pass@K counts a test input right when its answer
is among the first K. Also the Kaggle submission.json and the copy-the-input baseline."""
import numpy as np

from puzzles.arc import Plan, crop, encode, invert

KS = (1, 2, 5, 10, 100, 1000)  # the evaluator's pass@K; the paper's number is pass@2


def _sigmoid(q) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(q, np.float64)))


def _count(pool: dict, grid: np.ndarray, q: float, votes: int = 1):
    """More votes for grid in a pool {(shape, bytes): [grid, votes, sum of sigmoid q]}: one with
    its q, or several with their sum of q (another pool's entry)."""
    entry = pool.setdefault((grid.shape, grid.tobytes()), [grid, 0, 0.0])
    entry[1] += votes
    entry[2] += q


def _ranked(pool: dict) -> list:
    """[(grid, votes, mean sigmoid q)], best first by (votes, mean q); full ties keep the order in
    which the answers first came, as the official sort does (Python's sort is stable)."""
    ranked = [(grid, n, total / n) for grid, n, total in pool.values()]
    return sorted(ranked, key=lambda r: (r[1], r[2]), reverse=True)


def vote(answers: list, q_halt) -> list:
    """Pool the answers (grids in the original task's frame) given to one test input: a list of
    (grid, votes, mean sigmoid(q_halt)), best first by (votes, mean q)."""
    pool = {}
    for grid, q in zip(answers, _sigmoid(q_halt)):
        _count(pool, grid, q)
    return _ranked(pool)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def pass_at_k(ranked: dict, truth: dict, ks=KS) -> dict:
    """ranked[task][i]: the candidate grids for test input i, best first (may be empty);
    truth[task][i]: its right answer. {"trm": {k: ...}, "hrm": {k: ...}}, each a mean over
    truth's tasks. TRM (the paper's number): the fraction of a task's test inputs whose answer
    is among the first k. HRM's notebook: 1 only when all of the task's test inputs are."""
    out = {"trm": {}, "hrm": {}}
    for k in ks:
        right = [[any(_same(g, y) for g in ranked.get(task, [[]] * len(ys))[i][:k])
                  for i, y in enumerate(ys)] for task, ys in truth.items()]
        out["trm"][k] = float(np.mean([np.mean(r) for r in right]))
        out["hrm"][k] = float(np.mean([all(r) for r in right]))
    return out


def submission(ranked: dict, attempts: int = 2) -> dict:
    """The Kaggle submission.json dict: {task: [{"attempt_1": grid, "attempt_2": grid}, one per
    test input]}, the top answers as lists of rows; fewer answers repeat the first."""
    out = {}
    for task, inputs in ranked.items():
        out[task] = []
        for cands in inputs:
            # deviation: a test input without any answer gets [[0]] attempts so the list stays
            # one per test input; the official evaluator leaves it out
            grids = [g.tolist() for g in cands[:attempts]] or [[[0]]]
            out[task].append({f"attempt_{i + 1}": (grids + grids[:1] * attempts)[i]
                              for i in range(attempts)})
    return out


class Votes:
    """The evaluator's pools, filled batch by batch: each prediction of a test example
    is cropped, mapped back to its task's frame and counted for its test input with its
    sigmoid(q_halt). The official evaluator finds the test input by the hash of the cropped
    input; here the example's row says it (the same, since no task repeats a test input). Only
    the distinct answers are kept, so the whole ARC-1 test split (385,815 examples) fits."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.pools = {}  # (group, test pair) -> {(shape, bytes): [grid, votes, sum of q]}

    def add(self, rows, preds: np.ndarray, q_halt):
        """rows (B,): test-split example rows (test_batches; -1 is padding, skipped); preds
        (B, S) predicted tokens; q_halt (B,) halting logits of the same step."""
        p, s = self.plan, self.plan.splits["test"]
        rows, q = np.asarray(rows, np.int64), _sigmoid(q_halt)
        for b in np.flatnonzero(rows >= 0):
            e = rows[b]
            i = s.puzzle_identifiers[np.searchsorted(s.puzzle_indices, e, side="right") - 1]
            grid = invert(crop(preds[b], p.canvas), p.trans[i], p.maps[i])
            _count(self.pools.setdefault((int(p.task_of[i]), int(s.example_pair[e])), {}),
                   grid, q[b])

    def merge(self, pools: list):
        """Add other Votes' pools (e.g. every rank's, in rank order) to these."""
        for other in pools:
            for key, pool in other.items():
                for grid, n, total in pool.values():
                    _count(self.pools.setdefault(key, {}), grid, total, n)

    def score(self, ks=KS) -> tuple:
        """(pass_at_k's dict, the Kaggle submission, ranked) over every task of the test split; a
        test input that got no vote counts as wrong."""
        s = self.plan.splits["test"]
        ranked, truth = {}, {}
        for g in s.groups.tolist():
            task = self.plan.tasks[g]
            truth[task.name] = [y for _, y in s.pairs[g]]
            ranked[task.name] = [[grid for grid, _, _ in _ranked(self.pools.get((g, i), {}))]
                                 for i in range(len(s.pairs[g]))]
        return pass_at_k(ranked, truth, ks), submission(ranked), ranked


def score(plan: Plan, preds, q_halt, ks=KS) -> tuple:
    """Score predictions for the whole test split at once: preds (E, S) tokens and q_halt (E,)
    logits of the final supervision step, in test-split example order; as Votes.score."""
    votes = Votes(plan)
    votes.add(np.arange(len(preds)), preds, q_halt)
    return votes.score(ks)


def copy_baseline(plan: Plan) -> dict:
    """The floor that gives ARC numbers their meaning: answer every test input with itself.
    {"trm": {1: pass@1}, "hrm": ...} (one candidate, so pass@2 is the same) and "cell": the
    accuracy over the labelled cells (grid and EOS border) of the test pairs' tokens."""
    s = plan.splits["test"]
    ranked, truth, right, cells = {}, {}, 0, 0
    for g in s.groups.tolist():
        name = plan.tasks[g].name
        ranked[name] = [[a] for a, _ in s.pairs[g]]
        truth[name] = [y for _, y in s.pairs[g]]
        for a, y in s.pairs[g]:
            x, t = encode(a, canvas=plan.canvas), encode(y, canvas=plan.canvas)
            right += ((x == t) & (t != 0)).sum()
            cells += (t != 0).sum()
    return {**pass_at_k(ranked, truth, ks=(1, 2)), "cell": float(right / cells)}
