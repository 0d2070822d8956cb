"""Mazes: tokens, validation, breadth-first search, the generator, dihedral augmentation and how
a cell is drawn.

tokens: PAD 0, then "# SGo" -> 1..5: wall, open, start, goal, path (vocab 6; CHARS: token =
index + 1, as in the official CSVs). The label is the input with a shortest path from S to G
drawn as 'o'. Real mazes have many shortest paths (at least 96 each in Maze-Hard); the benchmark's
answer is the canonical one (canonical_path: breadth-first search from S trying the neighbours
down, left, right, up, each cell's parent the first cell that reached it). The offline generator
makes mazes whose shortest path is unique, so the rule and the path agree there. A path's length
in steps is the number of moves from S to G = #'o' + 1.
"""
import math
import random
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


# ---- generator: "lengthen + repair" (data.md)

def make(rng: random.Random, n: int, min_steps: int, density: float = 0.3):
    """An n x n maze whose unique shortest S-G path has >= min_steps steps: (input, label, steps)
    token arrays, or None when the walls leave no room (about 3% on 30x30; just call again)."""
    free = [rng.random() >= density for _ in range(n * n)]
    start = rng.choice([i for i in range(n * n) if free[i]])
    dist = bfs(free, n, start)[0]
    goal = max(range(n * n), key=dist.__getitem__)  # the farthest reachable cell
    path = _path(bfs(free, n, start, goal)[2], goal)
    cut = set()  # cells whose wall would disconnect S and G; they stay cut as walls are added
    while len(path) - 1 < min_steps:  # lengthen: wall a cell of the current shortest path
        options = [c for c in path[1:-1] if c not in cut]
        if not options:
            return None
        c = rng.choice(options)
        free[c] = False
        dist, _, parent = bfs(free, n, start, goal)
        if dist[goal] < 0:
            free[c] = True
            cut.add(c)
        else:
            path = _path(parent, goal)
    # repair: wall every other cell that continues a shortest path, so only `path` stays shortest
    steps, from_s, to_g = len(path) - 1, bfs(free, n, start)[0], bfs(free, n, goal)[0]
    for i, u in enumerate(path[:-1]):
        for v in _neighbours(n)[u]:
            if v != path[i + 1] and free[v] and from_s[v] == i + 1 and to_g[v] == steps - i - 1:
                free[v] = False
    x = np.where(free, OPEN, WALL).astype(np.uint8)
    x[start], x[goal] = START, GOAL
    y = x.copy()
    y[path[1:-1]] = PATH
    assert shortest_paths(x, (n, n)) == (steps, 1)
    return x, y, steps


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


def describe(spec: dict) -> str:
    n = spec["grid"][0]
    return f"{n}x{n} maze, unique shortest path >= {spec['min_steps']} steps"


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

def looks(t, x, y) -> tuple[list, tuple[int, int]]:
    """(fill, text, given, dot) per cell, and the box shape (the whole grid): walls dark, S and G
    bold on yellow, path cells dotted; with a label y, path cells that agree green and any cell
    that disagrees red. These come from the tokens themselves, so the question x is not needed."""
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
    n = math.isqrt(len(t))
    return cells, (n, n)
