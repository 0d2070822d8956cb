"""Mazes: tokens, validation, breadth-first search, the generator, dihedral augmentation and how
a cell is drawn.

tokens: PAD 0, then "# SGo" -> 1..5: wall, open, start, goal, path (vocab 6; CHARS: token =
index + 1, as in the official CSVs). The label is the input with a shortest path from S to G
drawn as 'o'. Real mazes have many shortest paths (at least 96 each in Maze-Hard); the benchmark's
answer is the canonical one (canonical_path: breadth-first search from S trying the neighbours
down, left, right, up, each cell's parent the first cell that reached it). The offline generator
(make) draws mazes the way the real ones look and labels them by the same rule. A path's length in
steps is the number of moves from S to G = #'o' + 1.

`python -m puzzles.maze [CSV ...]` times the generator on 1,000 + 1,000 30x30 mazes (what the
maze task generates offline) and compares their statistics with the given official-format CSVs.
"""
import math
import os
import random
import sys
import time
from functools import lru_cache

import numpy as np
import torch

from puzzles.common import SHOW_COLOURS, dihedral_maps, first_hit

CHARS = "# SGo"  # token = index + 1, PAD 0
PAD, WALL, OPEN, START, GOAL, PATH = range(6)


def decode(t: list) -> str:
    """Text grid of one row of tokens, in the CSV alphabet."""
    n = math.isqrt(len(t))
    return "\n".join("".join(CHARS[v - 1] if 1 <= v <= 5 else "?" for v in t[r:r + n])
                     for r in range(0, n * n, n))


def problem(grid, x, y):
    """(row, what is wrong) of the first bad (maze, label) pair of (N, S) arrays, or None."""
    if hit := first_hit((x < WALL) | (x > GOAL)):
        return hit[0], f"puzzle has a path 'o' or an invalid token at cell {hit[1]}"
    if hit := first_hit((y < WALL) | (y > PATH)):
        return hit[0], f"label has an invalid token at cell {hit[1]}"
    for tok in (START, GOAL):
        if hit := first_hit(((x == tok).sum(1) != 1)[:, None]):
            return hit[0], f"puzzle must have exactly one {CHARS[tok - 1]}"
    if hit := first_hit((x != y) & ~((x == OPEN) & (y == PATH))):
        was, now = CHARS[x[hit] - 1], CHARS[y[hit] - 1]
        return hit[0], f"label changes cell {hit[1]} from {was!r} to {now!r} (only ' ' -> 'o')"
    for i in range(len(y)):  # walk from S over path cells only (S, G, o are tokens 3, 4, 5)
        t = y[i].tolist()
        if bfs([v >= START for v in t], grid[0], t.index(START))[0][t.index(GOAL)] < 0:
            return i, "the path cells 'o' do not connect S to G"
        steps = shortest_paths(x[i], grid)[0]
        if t.count(PATH) + 1 != steps:  # connected and this long: a shortest path, and only that
            return i, (f"the path has {t.count(PATH) + 1} steps, but the shortest S-G path has "
                       f"{steps}")


def puzzle_problem(x: np.ndarray) -> str | None:
    """What is wrong with one (S,) maze given to solve: a path 'o' or an invalid token, or not
    exactly one S and one G; None if nothing."""
    if hit := first_hit(((x < WALL) | (x > GOAL))[None]):
        return f"cell {hit[1]} is not one of '#', ' ', 'S', 'G' (a maze to solve has no 'o')"
    for tok in (START, GOAL):
        if (x == tok).sum() != 1:
            return f"a maze needs exactly one {CHARS[tok - 1]}, this one has {(x == tok).sum()}"
    return None


# ---- breadth-first search

@lru_cache
def _neighbours(n):
    return [[r * n + c for r, c in ((i // n - 1, i % n), (i // n + 1, i % n),
                                    (i // n, i % n - 1), (i // n, i % n + 1))
             if 0 <= r < n and 0 <= c < n] for i in range(n * n)]


def bfs(free, n, src, stop=-1):
    """BFS from src over free cells, stopping once `stop` is reached: per cell the distance
    (-1 = unreachable), the number of shortest paths from src, and a BFS parent."""
    dist, count, parent = [-1] * (n * n), [0] * (n * n), [-1] * (n * n)
    dist[src], count[src], queue, nbrs = 0, 1, [src], _neighbours(n)
    for u in queue:  # the list grows while we walk it: a FIFO queue without deque
        if u == stop:
            break
        for v in nbrs[u]:
            if free[v] and dist[v] < 0:
                dist[v], parent[v] = dist[u] + 1, u
                queue.append(v)
            if dist[v] == dist[u] + 1:  # all of v's predecessors come before v in BFS order
                count[v] += count[u]
    return dist, count, parent


# the benchmark's tie-break among shortest paths (measured: all 2,000 real Maze-Hard rows follow it)
CANONICAL_MOVES = ((1, 0), (0, -1), (0, 1), (-1, 0))  # (row, col) steps: down, left, right, up


def canonical_path(tokens, n: int) -> list | None:
    """The benchmark's answer for one (S,) maze: the cells from S to G found by breadth-first
    search from S that tries the neighbours in CANONICAL_MOVES order and keeps, as each cell's
    parent, the first cell that reached it; None when G cannot be reached."""
    t = np.asarray(tokens).tolist()
    start, goal = t.index(START), t.index(GOAL)
    parent, queue = {start: -1}, [start]
    for u in queue:  # the list grows while we walk it: a FIFO queue without deque
        if u == goal:
            return _path([parent.get(i, -1) for i in range(n * n)], goal)
        r, c = divmod(u, n)
        for dr, dc in CANONICAL_MOVES:
            v = (r + dr) * n + c + dc
            if 0 <= r + dr < n and 0 <= c + dc < n and t[v] != WALL and v not in parent:
                parent[v] = u
                queue.append(v)
    return None


def canonical_label(tokens, n: int) -> np.ndarray:
    """The maze (S,) with its canonical path drawn as 'o': the benchmark's label."""
    y = np.array(tokens, dtype=np.uint8)
    y[canonical_path(tokens, n)[1:-1]] = PATH
    return y


def _path(parent, goal):
    path = [goal]
    while parent[path[-1]] >= 0:
        path.append(parent[path[-1]])
    return path[::-1]


def shortest_paths(tokens, grid: tuple[int, int]) -> tuple[int, int]:
    """(steps, number of shortest S-G paths) of one (S,) maze input or label; (-1, 0) if none."""
    t = np.asarray(tokens).tolist()
    dist, count, _ = bfs([v != WALL for v in t], grid[0], t.index(START))
    return dist[t.index(GOAL)], count[t.index(GOAL)]


# ---- generator, fitted to Maze-Hard's train.csv (the README compares it with the real mazes)
#
# Real mazes look like independent walls (P(wall | wall to the left) = wall density) and yet their
# shortest S-G path is about six times the straight-line distance; independent walls with random S
# and G never get there (data.md). So we draw independent walls *given* a long path, with a Markov
# chain whose stationary distribution is exactly that: start from any maze that meets the condition
# (found by walling cells of the shortest path until it is long enough), then again and again redraw
# a few cells, or move S or G, from the independent-walls distribution and keep the change only if
# the path is still long enough. The numbers below were fitted so that the mazes match the real
# train.csv (test_dev.csv is kept for checking) in STATISTICS; `python -m puzzles.maze` compares.
WALLS = (0.39, 0.035)  # each maze's wall probability ~ Normal(mean, sd); the long-path condition
#                        pulls the density of the result down to the real 0.37
SPARSER_START = 0.08  # the chain starts from fewer walls, so that lengthening rarely gets stuck
SWEEPS = 2.7  # cells redrawn per maze, in grid cell counts: enough to forget the start
MOVE_ENDS = 0.2  # share of chain steps that move S or G instead of redrawing walls


def _shortest_path(free, n, src, dst):
    """A shortest path from src to dst over free cells (a list of cells), None if there is none:
    the generator's inner loop, so bfs without the path counts, stopping at dst."""
    parent, queue, nbrs = [-2] * (n * n), [src], _neighbours(n)
    parent[src] = -1
    for u in queue:
        if u == dst:
            return _path(parent, dst)
        for v in nbrs[u]:
            if free[v] and parent[v] == -2:
                parent[v] = u
                queue.append(v)
    return None


def _lengthen(rng, free, n, start, goal, min_steps):
    """Wall random cells of the shortest start-goal path until it has >= min_steps steps, never a
    cell whose wall would cut start from goal; False when no cell is left to wall."""
    path, cut = _shortest_path(free, n, start, goal), set()
    while len(path) - 1 < min_steps:
        options = [c for c in path[1:-1] if c not in cut]
        if not options:
            return False
        c = rng.choice(options)
        free[c] = False
        if longer := _shortest_path(free, n, start, goal):
            path = longer
        else:
            free[c] = True
            cut.add(c)  # it stays a cut: adding walls never opens another way round
    return True


def _redrawn(cells):
    return max(1, round(cells / 75))  # cells redrawn per chain step: 12 of 900, about half kept


def _chain(rng, free, n, ends, density, min_steps, steps):
    """`steps` Metropolis steps on the free cells (changed in place) and the ends (S, G) of a
    maze with >= min_steps steps from S to G; returns the final ends. Each step redraws a few
    cells from independent walls of this density, or moves S or G to a random cell (the cell it
    left is redrawn), and is undone if S and G are no longer >= min_steps apart. Both moves are
    symmetric under the independent-walls distribution, so the chain leaves that distribution,
    restricted to the mazes that meet the condition, unchanged (a test checks it on a 3x3 grid)."""
    cells, (start, goal) = n * n, ends
    for _ in range(steps):
        ends = (start, goal)
        if rng.random() < MOVE_ENDS:
            moved, new = rng.randrange(2), rng.randrange(cells)
            if new in ends:
                continue
            changed = {ends[moved]: free[ends[moved]], new: free[new]}
            free[ends[moved]], free[new] = rng.random() >= density, True
            start, goal = (new, goal) if moved == 0 else (start, new)
        else:
            changed = {c: free[c] for c in rng.sample(range(cells), _redrawn(cells))
                       if c not in ends}
            for c in changed:
                free[c] = rng.random() >= density
        path = _shortest_path(free, n, start, goal)
        if path is None or len(path) <= min_steps:  # the condition broke: undo
            start, goal = ends
            for c, was in changed.items():
                free[c] = was
    return start, goal


def make(rng: random.Random, n: int, min_steps: int):
    """An n x n maze with independent walls, conditioned on a shortest S-G path of >= min_steps
    steps, and its canonical answer: (input, label, steps) token arrays, or None when the first
    draw leaves no room (just call again)."""
    cells, density = n * n, min(max(rng.gauss(*WALLS), 0.0), 0.6)
    free = [rng.random() >= density - SPARSER_START for _ in range(cells)]
    start = rng.randrange(cells)
    free[start] = True
    dist = bfs(free, n, start)[0]
    reachable = [i for i in range(cells) if dist[i] > 0]
    if len(reachable) < min_steps:
        return None
    goal = rng.choice(reachable)
    if not _lengthen(rng, free, n, start, goal, min_steps):
        return None
    start, goal = _chain(rng, free, n, (start, goal), density, min_steps,
                         round(SWEEPS * cells / _redrawn(cells)))
    x = np.where(free, OPEN, WALL).astype(np.uint8)
    x[start], x[goal] = START, GOAL
    y = canonical_label(x, n)
    return x, y, int((y == PATH).sum()) + 1


def generate(rng: random.Random, spec: dict, generator: torch.Generator):
    """One maze of a task in data.TASKS: (maze, label, meta), or None (call again)."""
    made = make(rng, spec["grid"][0], spec["min_steps"])
    return None if made is None else (made[0], made[1], {"steps": made[2]})


def stats(inputs: np.ndarray, labels: np.ndarray) -> dict:
    """Per-maze numbers of (N, S) mazes and labels, kept in PuzzleSet.meta: the fraction of wall
    cells, and whether the label is the canonical path (else another shortest path)."""
    n = math.isqrt(inputs.shape[1])
    canonical = [(canonical_label(x, n) == y).all() for x, y in zip(inputs, labels)]
    return {"walls": (inputs == WALL).mean(1), "canonical": np.array(canonical)}


# what "looks like Maze-Hard" means: the statistics the generator was fitted to, name -> (what,
# how far a generated set of a few hundred mazes may be from the real train.csv)
STATISTICS = {
    "walls": ("wall density, mean over mazes", 0.01),
    "walls_sd": ("wall density, sd between mazes", 0.006),
    "wall_after_wall": ("P(wall next to a wall, left or above) - density", 0.01),
    "steps_median": ("shortest path, median steps", 3),
    "steps_p90": ("shortest path, 90th percentile steps", 5),
    "at_minimum": ("share of mazes at the minimum path length", 0.06),
    "manhattan_median": ("straight-line (Manhattan) S-G distance, median", 4),
    "goal_on_border": ("share with G on the border", 0.06),
    "reachable": ("share of open cells reachable from S", 0.04),
}


def statistics(inputs: np.ndarray, labels: np.ndarray) -> dict:
    """The STATISTICS of (N, S) mazes and their labels."""
    n = math.isqrt(inputs.shape[1])
    walls = (inputs == WALL).reshape(-1, n, n)
    density = walls.mean((1, 2))
    pairs = [(walls[:, :, :-1], walls[:, :, 1:]), (walls[:, :-1], walls[:, 1:])]
    after = sum((a & b).sum() for a, b in pairs) / sum(a.sum() for a, _ in pairs)
    steps = (labels == PATH).sum(1) + 1
    (_, s_row, s_col), (_, g_row, g_col) = np.nonzero(inputs.reshape(-1, n, n) == START), \
        np.nonzero(inputs.reshape(-1, n, n) == GOAL)
    border = (g_row % (n - 1) == 0) | (g_col % (n - 1) == 0)
    reach = [(np.array(bfs((x != WALL).tolist(), n, int(np.argmax(x == START)))[0]) >= 0).sum()
             / (x != WALL).sum() for x in inputs]
    return {"walls": density.mean(), "walls_sd": density.std(),
            "wall_after_wall": after - walls.mean(), "steps_median": np.median(steps),
            "steps_p90": np.percentile(steps, 90), "at_minimum": (steps == steps.min()).mean(),
            "manhattan_median": np.median(abs(s_row - g_row) + abs(s_col - g_col)),
            "goal_on_border": border.mean(), "reachable": np.mean(reach)}


def describe(spec: dict) -> str:
    n = spec["grid"][0]
    return f"{n}x{n} maze, shortest path >= {spec['min_steps']} steps, canonical answer"


# ---- augmentation

def augment(grid, inputs: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
    """One of the 8 dihedral transforms per row (square grids). The label is not transformed with
    the maze but drawn anew by the benchmark's rule (canonical_label) on the transformed maze: the
    rule's tie-break breaks under rotation, unless the shortest path is unique (our generated
    mazes, where both agree). A Python BFS per maze: a maze batch costs milliseconds per row."""
    assert grid[0] == grid[1], "dihedral transforms need a square grid"
    maps = dihedral_maps(grid[0], generator.device)
    perm = maps[torch.randint(8, (len(inputs),), generator=generator, device=generator.device)]
    x = inputs.gather(1, perm.to(inputs.device))  # (B, S)
    y = np.stack([canonical_label(row, grid[0]) for row in x.cpu().numpy()])
    return x, torch.from_numpy(y).to(labels.device, labels.dtype)


# ---- drawing: what each cell looks like (puzzles.common.draw draws them)

def looks(t, x, y) -> tuple[list, None]:
    """(fill, text, given, dot) per cell, and no boxes (None: the outer border only): walls dark,
    S and G bold on yellow, path cells dotted; with a label y, path cells that agree green and any
    cell that disagrees red. These come from the tokens themselves, so the question x is not
    needed."""
    c, cells = SHOW_COLOURS, []
    for i, tok in enumerate(t.tolist()):
        given = tok in (WALL, START, GOAL)
        text = {START: "S", GOAL: "G", WALL: "", OPEN: "", PATH: ""}.get(tok, "?")
        fill = {WALL: c["wall"], START: c["ends"], GOAL: c["ends"]}.get(tok, c["answer"])
        wrong = y is not None and tok != y[i]
        right = y is not None and not wrong and tok == PATH
        if wrong and tok == WALL:
            text = "#"  # the red fill hides the wall colour: say what the cell holds
        fill = c["wrong"] if wrong else c["right"] if right else fill
        cells.append((fill, text, given, tok == PATH))
    return cells, None


# ---- python -m puzzles.maze: time the generator and compare it with real mazes

def _compare(paths: list, count: int = 2000, seed: int = 0):
    """Print the time to make `count` 30x30 mazes and a markdown table of their STATISTICS next
    to those of the official-format CSV files `paths`."""
    from puzzles import csv_format  # only here: the generator itself does not read files
    rng, made, tries, t0 = random.Random(seed), [], 0, time.perf_counter()
    while len(made) < count:
        tries += 1
        if (maze := make(rng, 30, 109)) is not None:
            made.append(maze)
    seconds = time.perf_counter() - t0
    print(f"{count:,} 30x30 mazes in {seconds:.1f}s, {1e3 * seconds / count:.1f} ms each "
          f"({tries - count:,} first draws retried), one core")
    columns = {f"generated ({count:,})": statistics(*(np.stack(a) for a in list(zip(*made))[:2]))}
    for path in paths:
        x, y, _ = csv_format.read(path, sys.modules[__name__], (30, 30))
        columns[f"{os.path.basename(path)} ({len(x):,})"] = statistics(x.numpy(), y.numpy())
    print("| statistic | " + " | ".join(columns) + " | test tolerance |")
    print("|---" * (len(columns) + 2) + "|")
    for key, (what, tolerance) in STATISTICS.items():
        print(f"| {what} | " + " | ".join(f"{c[key]:.3g}" for c in columns.values())
              + f" | ±{tolerance} |")


if __name__ == "__main__":
    _compare(sys.argv[1:])
