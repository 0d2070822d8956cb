"""Sudoku: tokens, validation, a solver, a generator of minimal puzzles, a hardness rating,
validity-preserving augmentation and how a cell is drawn.

tokens: PAD 0, blank 1, digit d -> d + 1 (vocab 11 for 9x9, 8 for 6x6, 6 for 4x4). The official
CSVs write a blank as '.' (CHARS: token = index + 1).
"""
import math
import random
from functools import lru_cache

import numpy as np
import torch

from puzzles.common import SHOW_COLOURS, first_hit

PAD, BLANK = 0, 1  # digit d is token d + 1
CHARS = ".123456789"
RATING_ISOMORPHS = 8  # a single branch count is very noisy; average it over random isomorphs


def box(n):
    """Box shape of an n x n Sudoku: 3x3 for 9, 2x3 for 6, 2x2 for 4."""
    rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return rows, n // rows


def decode(t: list) -> str:
    """Text grid of one row of tokens, with box separators."""
    n = math.isqrt(len(t))
    br, bc = box(n)
    char = lambda v: "." if v == BLANK else str(v - 1) if 2 <= v <= n + 1 else "?"
    sep = "+".join(["-" * (2 * bc + 1)] * (n // bc))[1:-1]
    lines = []
    for r in range(n):
        if r and r % br == 0:
            lines.append(sep)
        row = t[r * n:(r + 1) * n]
        lines.append(" | ".join(" ".join(map(char, row[c:c + bc])) for c in range(0, n, bc)))
    return "\n".join(lines)


def problem(grid, x, y):
    """(row, what is wrong) of the first bad (puzzle, answer) pair of (N, S) arrays, or None."""
    n = grid[0]
    if hit := first_hit((x < BLANK) | (x > n + 1)):
        return hit[0], f"puzzle has an invalid token at cell {hit[1]}"
    if hit := first_hit((y < 2) | (y > n + 1)):
        return hit[0], f"answer has a blank or an invalid token at cell {hit[1]}"
    br, bc = box(n)
    g = y.reshape(-1, n, n)  # (N, n, n)
    boxes = g.reshape(-1, n // br, br, n // bc, bc).transpose(0, 1, 3, 2, 4).reshape(-1, n, n)
    for unit, cells in (("row", g), ("column", g.transpose(0, 2, 1)), ("box", boxes)):
        if hit := first_hit((np.sort(cells, axis=2) != np.arange(2, n + 2)).any(axis=2)):
            return hit[0], f"answer is not a valid grid: {unit} {hit[1] + 1} repeats a digit"
    if hit := first_hit((x != BLANK) & (x != y)):
        r, c = divmod(int(hit[1]), n)
        return hit[0], f"answer disagrees with given digit at cell {hit[1]} (r{r + 1}c{c + 1})"


def puzzle_problem(x: np.ndarray) -> str | None:
    """What is wrong with one (S,) puzzle given to solve: an invalid token, or two equal givens in
    a row, column or box; None if nothing."""
    n = math.isqrt(len(x))
    if hit := first_hit(((x < BLANK) | (x > n + 1))[None]):
        return f"cell {hit[1]} holds no digit of a {n}x{n} Sudoku"
    for i, unit in enumerate(_units(n)[0]):  # n rows, then n columns, then n boxes
        given = [int(x[c]) for c in unit if x[c] != BLANK]
        if len(given) != len(set(given)):
            digit = next(d for d in given if given.count(d) > 1) - 1
            return f"{('row', 'column', 'box')[i // n]} {i % n + 1} has the digit {digit} twice"
    return None


# ---- bitmask solver (naked + hidden singles, MRV branching) and generator
# a cell's candidates are a bitmask, bit d-1 for digit d; solved cells have one bit set

@lru_cache
def _units(n):
    """(units, peers) of an n x n Sudoku: rows, columns and boxes as lists of cell indices."""
    br, bc = box(n)
    units = [[r * n + c for c in range(n)] for r in range(n)]
    units += [[r * n + c for r in range(n)] for c in range(n)]
    units += [[(r0 + r) * n + c0 + c for r in range(br) for c in range(bc)]
              for r0 in range(0, n, br) for c0 in range(0, n, bc)]
    peers = [tuple({p for u in units if i in u for p in u} - {i}) for i in range(n * n)]
    return units, peers


def _propagate(cand, todo, n):
    """Naked and hidden singles to a fixpoint, in place; False on a contradiction."""
    units, peers = _units(n)
    full = (1 << n) - 1
    while True:
        while todo:  # naked singles: a solved cell removes its digit from its peers
            c = todo.pop()
            bit = cand[c]
            for p in peers[c]:
                m = cand[p]
                if m & bit:
                    m ^= bit
                    if not m:
                        return False
                    cand[p] = m
                    if not m & (m - 1):
                        todo.append(p)
        for unit in units:  # hidden singles: a digit with one place left in a unit goes there
            once = twice = 0
            for c in unit:
                twice |= once & cand[c]
                once |= cand[c]
            if once != full:
                return False
            if only := once & ~twice:
                for c in unit:
                    m = cand[c] & only
                    if m and m != cand[c]:
                        if m & (m - 1):
                            return False
                        cand[c] = m
                        todo.append(c)
        if not todo:
            return True


def _search(cand, todo, n, limit, sols, guesses, rng=None):
    """Depth-first search; appends up to `limit` solutions, counts branch points in guesses[0]."""
    if not _propagate(cand, todo, n):
        return
    best, fewest = -1, n + 1
    for c, m in enumerate(cand):  # MRV: branch on the cell with the fewest candidates
        if m & (m - 1) and m.bit_count() < fewest:
            best, fewest = c, m.bit_count()
    if best < 0:
        sols.append(cand)
        return
    guesses[0] += 1
    bits = [b for b in (1 << d for d in range(n)) if cand[best] & b]
    if rng:
        rng.shuffle(bits)
    for b in bits:
        child = cand.copy()
        child[best] = b
        _search(child, [best], n, limit, sols, guesses, rng)
        if len(sols) >= limit:
            return


def solve(puzzle, limit: int = 2) -> tuple[list[np.ndarray], int]:
    """Up to `limit` solutions of one (S,) token puzzle, and the number of branch points."""
    t = np.asarray(puzzle).tolist()
    n = math.isqrt(len(t))
    cand = [1 << (v - 2) if v >= 2 else (1 << n) - 1 for v in t]
    sols, guesses = [], [0]
    _search(cand, [c for c, v in enumerate(t) if v >= 2], n, limit, sols, guesses)
    return [np.array([m.bit_length() + 1 for m in s], np.uint8) for s in sols], guesses[0]


def make(rng: random.Random, n: int, needs_guess: bool = False):
    """A random minimal puzzle with a unique solution: (puzzle, solution) token arrays, or None
    when needs_guess but naked and hidden singles alone solve it (then just call again)."""
    full = (1 << n) - 1
    sols = []
    _search([full] * n * n, [], n, 1, sols, [0], rng)  # random digit order: a random full grid
    answer = sols[0]
    clues = answer.copy()
    for c in rng.sample(range(n * n), n * n):  # remove clues in random order, keep uniqueness
        # the puzzle stays unique iff no solution puts another digit in c
        cand = [m or full for m in clues]
        cand[c] = full & ~answer[c]
        found = []
        _search(cand, [i for i, m in enumerate(clues) if m and i != c], n, 1, found, [0])
        if not found:
            clues[c] = 0
    if needs_guess:
        cand = [m or full for m in clues]
        _propagate(cand, [i for i, m in enumerate(clues) if m], n)
        if all(not m & (m - 1) for m in cand):
            return None
    to_tokens = lambda ms: np.array([m.bit_length() + 1 for m in ms], np.uint8)
    return to_tokens(clues), to_tokens(answer)


def rating(puzzle, generator: torch.Generator, isomorphs: int = RATING_ISOMORPHS) -> float:
    """Mean branch points to the first solution over random isomorphs (data.md: one is noisy)."""
    x = torch.as_tensor(puzzle).repeat(isomorphs, 1)  # (I, S)
    x, _ = augment((math.isqrt(x.shape[1]),) * 2, x, x, generator)
    return float(np.mean([solve(row, limit=1)[1] for row in x.numpy()]))


def generate(rng: random.Random, spec: dict, generator: torch.Generator):
    """One puzzle of a task in data.TASKS: (puzzle, answer, meta), or None (call again)."""
    made = make(rng, spec["grid"][0], spec["needs_guess"])
    if made is None:
        return None
    # 8 more solves for the rating: only where guesses make hardness vary
    return made[0], made[1], {"rating": rating(made[0], generator)} if spec["needs_guess"] else {}


def stats(inputs: np.ndarray, labels: np.ndarray) -> dict:
    """Per-puzzle numbers of (N, S) puzzles, kept in PuzzleSet.meta: the given digits."""
    return {"clues": (inputs != BLANK).sum(1)}


def describe(spec: dict) -> str:
    n = spec["grid"][0]
    return f"{n}x{n} minimal" + ", needs a guess" * spec["needs_guess"]


# ---- augmentation: a fresh random transform per row, as index gathers (fast on a GPU batch)

def _line_order(rows, n, width, generator):
    """(B, n) random line order: shuffle the bands of `width` lines and the lines inside each."""
    dev = generator.device
    bands = torch.rand(rows, n // width, 1, generator=generator, device=dev).argsort(1)
    inner = torch.rand(rows, n // width, width, generator=generator, device=dev).argsort(2)
    return (bands * width + inner).view(rows, n)


def augment(grid, inputs: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
    """Digit relabel, band/row and stack/column shuffles, and a transpose if boxes are square;
    input and label of a row share each one."""
    B, S = inputs.shape
    n, dev = grid[0], generator.device  # draw on the generator's device, then move
    br, bc = box(n)
    rows, cols = _line_order(B, n, br, generator), _line_order(B, n, bc, generator)
    perm = rows[:, :, None] * n + cols[:, None, :]  # (B, n, n) source cell of each cell
    if br == bc:  # a transpose maps 2x3 boxes to 3x2 ones, so 6x6 never transposes
        flip = torch.rand(B, 1, 1, generator=generator, device=dev) < 0.5
        perm = torch.where(flip, perm.transpose(1, 2), perm)
    digits = torch.rand(B, n, generator=generator, device=dev).argsort(1) + 2  # (B, n)
    lut = torch.cat([torch.arange(2, device=dev).expand(B, 2), digits], 1)  # (B, vocab)
    perm = perm.reshape(B, S).to(inputs.device)
    lut = lut.to(inputs.device)
    return tuple(lut.gather(1, t.gather(1, perm).long()).to(t.dtype) for t in (inputs, labels))


# ---- drawing: what each cell looks like (puzzles.common.draw draws them)

def looks(t, x, y) -> tuple[list, tuple[int, int]]:
    """(fill, text, given, dot) per cell, and the box shape: the givens of the question x bold on
    grey, the answer's digits in pen on white, a blank empty, an invalid token '?'; with a label
    y, right answer cells green, any wrong cell red. A given that the tokens overwrite is red even
    without a label."""
    n, c, cells = math.isqrt(len(t)), SHOW_COLOURS, []
    if box(n)[0] == 1:
        raise ValueError(f"show: a {n}x{n} Sudoku has no boxes (the tasks have n = 4, 6 or 9)")
    for i, tok in enumerate(t.tolist()):
        given = x is not None and x[i] != BLANK
        text = "" if tok == BLANK else str(tok - 1) if 2 <= tok <= n + 1 else "?"
        wrong = (given and tok != x[i]) or (y is not None and tok != y[i])
        right = y is not None and not given and not wrong
        fill = c["given"] if given else c["answer"]
        fill = c["wrong"] if wrong else c["right"] if right else fill
        cells.append((fill, text, given, False))
    return cells, box(n)
