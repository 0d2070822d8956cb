"""Puzzle data for HRM / TRM: Sudoku and mazes as fixed-length sequences of token ids.

A puzzle is a grid read row-major into S = rows * cols tokens. The model reads `inputs` and must
write `labels`; every cell is supervised and scored (givens and walls too), as in the official code.

tasks (see TASKS)
  sudoku      Sudoku-Extreme 9x9, the papers' benchmark: 1k train puzzles drawn (seeded) from the
              official train.csv, test = all 422,786 puzzles of test.csv
  maze        Maze-Hard 30x30, the papers' benchmark: 1k train / 1k test
  sudoku4     4x4 Sudoku (2x2 boxes), generated: the quickest smoke test
  sudoku6     6x6 Sudoku (2x3 boxes), generated: small, but recursion clearly helps
  maze-small  small mazes, generated like Maze-Hard

tokens
  sudoku  PAD 0, blank 1, digit d -> d + 1 (vocab 11 for 9x9, 8 for 6x6, 6 for 4x4)
  maze    PAD 0, then "# SGo" -> 1..5: wall, open, start, goal, path (vocab 6). The label is the
          input with the unique shortest path from S to G drawn as 'o'.
  PAD never occurs here (every grid is full); it is kept so the ids match the official datasets.

pictures
  decode(puzzles, tokens) writes one grid as text; show(puzzles, tokens, ax) draws it on a
  matplotlib Axes, with givens, right and wrong cells and the cells changed since a previous answer.

The benchmarks come from `data_dir` if given, else the cache under `cache_dir`, else a download
from Hugging Face ($HF_ENDPOINT, default https://huggingface.co). If that fails we fall back to our
offline generator and say so loudly: generated data is never the benchmark, and
PuzzleSet.generated / .source always say which one you have.
"""
import csv
import itertools
import math
import os
import random
import time
import urllib.request
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

SUDOKU_PAD, SUDOKU_BLANK = 0, 1  # digit d is token d + 1
MAZE_CHARS = "# SGo"  # token = index + 1, PAD 0
MAZE_PAD, WALL, OPEN, START, GOAL, PATH = range(6)

# n_train / n_test: sizes of generated sets; n_train is also the size of the official Sudoku
# subsample (the 1k), while official test sets are used whole.
# needs_guess: generated Sudoku must not be solvable by singles alone (else any minimal puzzle);
# min_steps: generated mazes have a unique shortest path of at least that many steps.
TASKS = {
    "sudoku": dict(description="Sudoku-Extreme 9x9 (benchmark)", repo="sapientinc/sudoku-extreme",
                   kind="sudoku", grid=(9, 9), vocab=11, n_train=1000, n_test=1000,
                   needs_guess=True),
    "maze": dict(description="Maze-Hard 30x30 (benchmark)", repo="sapientinc/maze-30x30-hard-1k",
                 kind="maze", grid=(30, 30), vocab=6, n_train=1000, n_test=1000, min_steps=110),
    "sudoku4": dict(description="4x4 Sudoku, 2x2 boxes, minimal puzzles (generated)", repo=None,
                    kind="sudoku", grid=(4, 4), vocab=6, n_train=5000, n_test=1000,
                    needs_guess=False),
    "sudoku6": dict(description="6x6 Sudoku, 2x3 boxes, minimal puzzles (generated)", repo=None,
                    kind="sudoku", grid=(6, 6), vocab=8, n_train=30000, n_test=1000,
                    needs_guess=False),
    "maze-small": dict(description="small maze, unique shortest path (generated)", repo=None,
                       kind="maze", grid=(7, 7), vocab=6, n_train=30000, n_test=1000,
                       min_steps=12),
}
CSV_CHARS = {"sudoku": ".123456789", "maze": MAZE_CHARS}  # official CSVs: token = index + 1
RATING_ISOMORPHS = 8  # a single branch count is very noisy; average it over random isomorphs


@dataclass
class PuzzleSet:
    task: str
    split: str  # "train" or "test"
    inputs: torch.Tensor = field(repr=False)  # (N, S) uint8 token ids
    labels: torch.Tensor = field(repr=False)  # (N, S) uint8 token ids, every cell supervised
    vocab_size: int
    grid: tuple[int, int]  # (rows, cols), S = rows * cols
    kind: str  # "sudoku" or "maze": selects augmentation and validity rules
    generated: bool  # True if made by our offline generator (never the benchmark)
    source: str  # one line of provenance
    meta: dict = field(repr=False)  # per-puzzle "rating", "clues" or "steps", seeds, subsample rows

    def __len__(self):
        return len(self.inputs)


def _box(n):
    """Box shape of an n x n Sudoku: 3x3 for 9, 2x3 for 6, 2x2 for 4."""
    rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return rows, n // rows


def decode(puzzles, tokens) -> str:
    """Pretty text grid of one (S,) token row; `puzzles` is a PuzzleSet or a kind string."""
    kind = getattr(puzzles, "kind", puzzles)
    t = [int(v) for v in tokens]
    n = math.isqrt(len(t))
    if kind == "maze":
        return "\n".join("".join(MAZE_CHARS[v - 1] if 1 <= v <= 5 else "?" for v in t[r:r + n])
                         for r in range(0, n * n, n))
    br, bc = _box(n)
    char = lambda v: "." if v == SUDOKU_BLANK else str(v - 1) if 2 <= v <= n + 1 else "?"
    sep = "+".join(["-" * (2 * bc + 1)] * (n // bc))[1:-1]
    lines = []
    for r in range(n):
        if r and r % br == 0:
            lines.append(sep)
        row = t[r * n:(r + 1) * n]
        lines.append(" | ".join(" ".join(map(char, row[c:c + bc])) for c in range(0, n, bc)))
    return "\n".join(lines)


# ---- validation: shared by the CSV loader and the generated sets; raises, never repairs

def _first(bad):
    """(row, column) of the first True of a (N, K) mask, or None."""
    hits = np.argwhere(bad)
    return tuple(hits[0]) if len(hits) else None


def _sudoku_problem(grid, x, y):
    n = grid[0]
    if hit := _first((x < SUDOKU_BLANK) | (x > n + 1)):
        return hit[0], f"puzzle has an invalid token at cell {hit[1]}"
    if hit := _first((y < 2) | (y > n + 1)):
        return hit[0], f"answer has a blank or an invalid token at cell {hit[1]}"
    br, bc = _box(n)
    g = y.reshape(-1, n, n)  # (N, n, n)
    boxes = g.reshape(-1, n // br, br, n // bc, bc).transpose(0, 1, 3, 2, 4).reshape(-1, n, n)
    for unit, cells in (("row", g), ("column", g.transpose(0, 2, 1)), ("box", boxes)):
        if hit := _first((np.sort(cells, axis=2) != np.arange(2, n + 2)).any(axis=2)):
            return hit[0], f"answer is not a valid grid: {unit} {hit[1] + 1} repeats a digit"
    if hit := _first((x != SUDOKU_BLANK) & (x != y)):
        r, c = divmod(int(hit[1]), n)
        return hit[0], f"answer disagrees with given digit at cell {hit[1]} (r{r + 1}c{c + 1})"


def _maze_problem(grid, x, y):
    if hit := _first((x < WALL) | (x > GOAL)):
        return hit[0], f"puzzle has a path 'o' or an invalid token at cell {hit[1]}"
    if hit := _first((y < WALL) | (y > PATH)):
        return hit[0], f"label has an invalid token at cell {hit[1]}"
    for tok in (START, GOAL):
        if hit := _first(((x == tok).sum(1) != 1)[:, None]):
            return hit[0], f"puzzle must have exactly one {MAZE_CHARS[tok - 1]}"
    if hit := _first((x != y) & ~((x == OPEN) & (y == PATH))):
        was, now = MAZE_CHARS[x[hit] - 1], MAZE_CHARS[y[hit] - 1]
        return hit[0], f"label changes cell {hit[1]} from {was!r} to {now!r} (only ' ' -> 'o')"
    for i in range(len(y)):  # walk from S over path cells only (S, G, o are tokens 3, 4, 5)
        t = y[i].tolist()
        if _bfs([v >= START for v in t], grid[0], t.index(START))[0][t.index(GOAL)] < 0:
            return i, "the path cells 'o' do not connect S to G"


def _check(kind, grid, x, y, where):
    """Raise ValueError naming where(row) and what is wrong with the first bad puzzle."""
    problem = (_sudoku_problem if kind == "sudoku" else _maze_problem)(grid, x, y)
    if problem:
        raise ValueError(f"{where(int(problem[0]))}: {problem[1]}")


# ---- official CSVs: source,question,answer,rating

def _csv_rows(path, rows=None):
    """Yield (data row number from 1, question, answer, rating) of an official-format CSV.
    rows: only these data rows, in this order; picked as plain lines first, which is 10x faster
    on the 3.8M-row train.csv (the official files never quote a newline)."""
    with open(path, newline="", encoding="utf-8") as f:  # newline="": csv takes LF and CRLF
        numbers, lines = itertools.count(1), f
        if rows is not None:
            wanted, header = set(rows), f.readline()
            found = {i: line for i, line in enumerate(f, 1) if i in wanted}
            numbers, lines = rows, [header] + [found[i] for i in rows]
        reader = csv.reader(lines)
        header = next(reader, [])
        if header != ["source", "question", "answer", "rating"]:
            raise ValueError(f"{path}, line 1: header must be source,question,answer,rating, "
                             f"got {','.join(header)!r}")
        for i, row in zip(numbers, reader):
            if len(row) != 4:
                raise ValueError(f"{path}, data row {i}: {len(row)} fields, expected 4")
            yield i, *row[1:]


def _read_csv(path, kind, grid, rows=None):
    """(inputs, labels, meta) of an official CSV; rows: 0-based data rows to keep, in order."""
    picked = list(_csv_rows(path, None if rows is None else [int(r) + 1 for r in rows]))
    if not picked:
        raise ValueError(f"{path}: no data rows after the header")
    num, qs, ans, ratings = zip(*picked)
    where = lambda k: f"{path}, data row {num[k]}"
    lut = np.zeros(256, np.uint8)  # char -> token; 0 marks an unknown character
    lut[np.frombuffer(CSV_CHARS[kind].encode(), np.uint8)] = np.arange(1, len(CSV_CHARS[kind]) + 1)
    size = grid[0] * grid[1]
    out = []
    for col, name in ((qs, "question"), (ans, "answer")):
        lens = np.fromiter(map(len, col), int, len(col))
        if hit := _first((lens != size)[:, None]):
            raise ValueError(f"{where(hit[0])}: {name} has {lens[hit[0]]} characters, not {size}")
        chars = np.frombuffer("".join(col).encode("ascii", "replace"), np.uint8)
        tok = lut[chars].reshape(-1, size)  # (N, S)
        if hit := _first(tok == 0):
            raise ValueError(f"{where(hit[0])}: {name} has unknown character "
                             f"{col[hit[0]][hit[1]]!r} at cell {hit[1]}")
        out.append(tok)
    _check(kind, grid, *out, where)
    try:
        meta = {"rating": np.array(ratings).astype(np.float32)}
    except ValueError:  # keep a non-numeric rating column as text
        meta = {"rating": np.array(ratings)}
    if kind == "sudoku":
        meta["clues"] = (out[0] != SUDOKU_BLANK).sum(1)
    return torch.from_numpy(out[0]), torch.from_numpy(out[1]), meta


def _download(url, dest, log):
    """Stream url to dest.part, then rename: a broken download never looks finished."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    log(f"downloading {url}")
    with urllib.request.urlopen(url, timeout=10) as r, open(part, "wb") as f:
        total, done, t0 = int(r.headers.get("Content-Length") or 0), 0, time.time()
        shown = t0
        while chunk := r.read(1 << 20):
            f.write(chunk)
            done += len(chunk)
            if total and time.time() - shown > 5:  # train.csv is 719 MB: show progress
                shown, rate = time.time(), done / (time.time() - t0 + 1e-9)
                log(f"  {done / 1e6:.0f} / {total / 1e6:.0f} MB, ETA {(total - done) / rate:.0f}s")
    if total and done != total:
        raise OSError(f"download of {url} stopped at {done} of {total} bytes")
    os.replace(part, dest)
    log(f"  saved {dest} ({done / 1e6:.1f} MB in {time.time() - t0:.0f}s)")


def load_task(task: str, data_dir: str | None = None, cache_dir: str = "data", seed: int = 0,
              log=print) -> tuple[PuzzleSet, PuzzleSet]:
    """(train, test) PuzzleSets of a task in TASKS. seed: generator seed or 1k subsample seed."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    spec = TASKS[task]
    if spec["repo"] is None:
        if data_dir is not None:
            raise ValueError(f"task {task} is always generated; data_dir does not apply")
        return _generated_task(task, seed, cache_dir, log)
    files = ("train.csv", "test.csv")
    if data_dir is not None:
        folder, origin = Path(data_dir), f"csv: {data_dir}"
        for name in files:
            if not (folder / name).exists():
                raise FileNotFoundError(f"{folder / name} not found: data_dir must contain "
                                        f"train.csv and test.csv in the official format of "
                                        f"{spec['repo']} (source,question,answer,rating)")
    else:
        folder, origin = Path(cache_dir) / spec["repo"].split("/")[1], f"official: {spec['repo']}"
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        try:
            for name in files:
                if not (folder / name).exists():
                    url = f"{endpoint}/datasets/{spec['repo']}/resolve/main/{name}"
                    _download(url, folder / name, log)
        except OSError as e:  # no network, HTTP error, timeout, full disk: generate instead
            bar = "#" * 88
            log("\n".join([bar, f"# could not download {spec['repo']}: {e}",
                           f"# USING GENERATED DATA for task {task!r}. This is NOT the benchmark:",
                           "# results are NOT comparable to the paper. For the real data put",
                           f"# train.csv and test.csv into {folder}/ (or pass data_dir).", bar]))
            return _generated_task(task, seed, cache_dir, log)
    common = dict(task=task, vocab_size=spec["vocab"], grid=spec["grid"], kind=spec["kind"],
                  generated=False)
    rows, sub = None, {}
    # deviation: the 1k Sudoku subset is drawn with a fixed seed (the official builder sets none)
    if task == "sudoku":
        with open(folder / "train.csv", "rb") as f:
            total = sum(1 for _ in f) - 1  # data rows = lines after the header
        if total < spec["n_train"]:
            raise ValueError(f"{folder / 'train.csv'} has {total} rows, need {spec['n_train']}")
        rows = np.random.default_rng(seed).choice(total, spec["n_train"], replace=False)
        sub = {"subsample_seed": seed, "subsample_rows": rows}
    x, y, meta = _read_csv(folder / "train.csv", spec["kind"], spec["grid"], rows)
    how = f"{len(x):,} puzzles" if rows is None else \
        f"{len(x):,} of {total:,} rows drawn with numpy default_rng({seed}).choice"
    train = PuzzleSet(split="train", inputs=x, labels=y, source=f"{origin} train.csv ({how})",
                      meta={**meta, **sub}, **common)
    x, y, meta = _read_csv(folder / "test.csv", spec["kind"], spec["grid"])
    test = PuzzleSet(split="test", inputs=x, labels=y, meta=meta,
                     source=f"{origin} test.csv ({len(x):,} puzzles)", **common)
    return train, test


# ---- Sudoku: bitmask solver (naked + hidden singles, MRV branching) and generator
# a cell's candidates are a bitmask, bit d-1 for digit d; solved cells have one bit set

@lru_cache
def _units(n):
    """(units, peers) of an n x n Sudoku: rows, columns and boxes as lists of cell indices."""
    br, bc = _box(n)
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


def solve_sudoku(puzzle, limit: int = 2) -> tuple[list[np.ndarray], int]:
    """Up to `limit` solutions of one (S,) token puzzle, and the number of branch points."""
    t = np.asarray(puzzle).tolist()
    n = math.isqrt(len(t))
    cand = [1 << (v - 2) if v >= 2 else (1 << n) - 1 for v in t]
    sols, guesses = [], [0]
    _search(cand, [c for c, v in enumerate(t) if v >= 2], n, limit, sols, guesses)
    return [np.array([m.bit_length() + 1 for m in s], np.uint8) for s in sols], guesses[0]


def make_sudoku(rng: random.Random, n: int, needs_guess: bool = False):
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


def sudoku_rating(puzzle, generator: torch.Generator, isomorphs: int = RATING_ISOMORPHS) -> float:
    """Mean branch points to the first solution over random isomorphs (data.md: one is noisy)."""
    x = torch.as_tensor(puzzle).repeat(isomorphs, 1)  # (I, S)
    x, _ = augment("sudoku", (math.isqrt(x.shape[1]),) * 2, x, x, generator)
    return float(np.mean([solve_sudoku(row, limit=1)[1] for row in x.numpy()]))


# ---- mazes: "lengthen + repair" (data.md). path length = steps = moves from S to G = #'o' + 1

@lru_cache
def _neighbours(n):
    return [[r * n + c for r, c in ((i // n - 1, i % n), (i // n + 1, i % n),
                                    (i // n, i % n - 1), (i // n, i % n + 1))
             if 0 <= r < n and 0 <= c < n] for i in range(n * n)]


def _bfs(free, n, src, stop=-1):
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


def _path(parent, goal):
    path = [goal]
    while parent[path[-1]] >= 0:
        path.append(parent[path[-1]])
    return path[::-1]


def maze_shortest_paths(tokens, grid: tuple[int, int]) -> tuple[int, int]:
    """(steps, number of shortest S-G paths) of one (S,) maze input or label; (-1, 0) if none."""
    t = np.asarray(tokens).tolist()
    dist, count, _ = _bfs([v != WALL for v in t], grid[0], t.index(START))
    return dist[t.index(GOAL)], count[t.index(GOAL)]


def make_maze(rng: random.Random, n: int, min_steps: int, density: float = 0.3):
    """An n x n maze whose unique shortest S-G path has >= min_steps steps: (input, label, steps)
    token arrays, or None when the walls leave no room (about 3% on 30x30; just call again)."""
    free = [rng.random() >= density for _ in range(n * n)]
    start = rng.choice([i for i in range(n * n) if free[i]])
    dist = _bfs(free, n, start)[0]
    goal = max(range(n * n), key=dist.__getitem__)  # the farthest reachable cell
    path = _path(_bfs(free, n, start, goal)[2], goal)
    cut = set()  # cells whose wall would disconnect S and G; they stay cut as walls are added
    while len(path) - 1 < min_steps:  # lengthen: wall a cell of the current shortest path
        options = [c for c in path[1:-1] if c not in cut]
        if not options:
            return None
        c = rng.choice(options)
        free[c] = False
        dist, _, parent = _bfs(free, n, start, goal)
        if dist[goal] < 0:
            free[c] = True
            cut.add(c)
        else:
            path = _path(parent, goal)
    # repair: wall every other cell that continues a shortest path, so only `path` stays shortest
    steps, from_s, to_g = len(path) - 1, _bfs(free, n, start)[0], _bfs(free, n, goal)[0]
    for i, u in enumerate(path[:-1]):
        for v in _neighbours(n)[u]:
            if v != path[i + 1] and free[v] and from_s[v] == i + 1 and to_g[v] == steps - i - 1:
                free[v] = False
    x = np.where(free, OPEN, WALL).astype(np.uint8)
    x[start], x[goal] = START, GOAL
    y = x.copy()
    y[path[1:-1]] = PATH
    assert maze_shortest_paths(x, (n, n)) == (steps, 1)
    return x, y, steps


# ---- generated sets: seeded, deduplicated, cached as .npz

def _generate(task, split, seed, count, exclude, log):
    """count distinct puzzles not in exclude (a set of input bytes), with per-puzzle meta."""
    spec, n = TASKS[task], TASKS[task]["grid"][0]
    rng = random.Random(f"{task}/{split}/{seed}")  # str seeds are stable across runs
    gen = torch.Generator().manual_seed(rng.getrandbits(62))
    xs, ys, extras, seen, t0 = [], [], [], set(exclude), time.time()
    shown = t0
    while len(xs) < count:
        if spec["kind"] == "maze":
            made = make_maze(rng, n, spec["min_steps"])
        else:
            made = make_sudoku(rng, n, spec["needs_guess"])
        if made is None or made[0].tobytes() in seen:
            continue
        seen.add(made[0].tobytes())
        xs.append(made[0])
        ys.append(made[1])
        if spec["kind"] == "maze":
            extras.append({"steps": made[2]})
        else:
            extras.append({"clues": int((made[0] != SUDOKU_BLANK).sum())})
            if spec["needs_guess"]:  # 8 more solves: only where guesses make hardness vary
                extras[-1]["rating"] = sudoku_rating(made[0], gen)
        if time.time() - shown > 10:
            shown, per = time.time(), (time.time() - t0) / len(xs)
            log(f"  generating {task} {split}: {len(xs):,}/{count:,}, {1e3 * per:.1f} ms each, "
                f"ETA {per * (count - len(xs)):.0f}s")
    return np.stack(xs), np.stack(ys), {k: np.array([e[k] for e in extras]) for k in extras[0]}


def _generated_task(task, seed, cache_dir, log):
    spec = TASKS[task]
    params = repr(sorted((k, v) for k, v in spec.items() if k != "description"))
    path = Path(cache_dir) / "generated" / f"{task}-seed{seed}.npz"
    arrays = dict(np.load(path)) if path.exists() else {}
    if str(arrays.get("params")) != params:  # nothing cached, or TASKS changed since
        t0, arrays, seen = time.time(), {}, set()
        log(f"generating {task} (seed {seed}): {spec['n_train']:,} train + {spec['n_test']:,} test")
        for split in ("train", "test"):  # test excludes every train puzzle
            x, y, meta = _generate(task, split, seed, spec["n_" + split], seen, log)
            seen = {r.tobytes() for r in x}
            arrays.update({f"{split}_{k}": v for k, v in dict(inputs=x, labels=y, **meta).items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        with open(part, "wb") as f:
            np.savez_compressed(f, params=params, **arrays)
        os.replace(part, path)
        log(f"  saved {path} in {time.time() - t0:.0f}s")
    train_keys = {r.tobytes() for r in arrays["train_inputs"]}
    assert not any(r.tobytes() in train_keys for r in arrays["test_inputs"]), "train/test overlap"
    n = spec["grid"][0]
    what = f"{n}x{n} maze, unique shortest path >= {spec['min_steps']} steps" \
        if spec["kind"] == "maze" else f"{n}x{n} minimal" + ", needs a guess" * spec["needs_guess"]
    sets = []
    for split in ("train", "test"):
        cols = {k.split("_", 1)[1]: v for k, v in arrays.items() if k.startswith(split + "_")}
        x, y = cols.pop("inputs"), cols.pop("labels")
        _check(spec["kind"], spec["grid"], x, y, lambda i, s=split: f"{path} ({s}), row {i + 1}")
        sets.append(PuzzleSet(
            task=task, split=split, inputs=torch.from_numpy(x), labels=torch.from_numpy(y),
            vocab_size=spec["vocab"], grid=spec["grid"], kind=spec["kind"], generated=True,
            source=f"GENERATED offline (seed {seed}, {what}, {len(x):,} puzzles) - "
                   "not the benchmark",
            meta={**cols, "seed": seed}))
    return tuple(sets)


# ---- augmentation: a fresh random transform per row, as index gathers (fast on a GPU batch)

def _line_order(rows, n, width, generator):
    """(B, n) random line order: shuffle the bands of `width` lines and the lines inside each."""
    dev = generator.device
    bands = torch.rand(rows, n // width, 1, generator=generator, device=dev).argsort(1)
    inner = torch.rand(rows, n // width, width, generator=generator, device=dev).argsort(2)
    return (bands * width + inner).view(rows, n)


def augment(kind: str, grid: tuple[int, int], inputs: torch.Tensor, labels: torch.Tensor,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random validity-preserving transforms of a (B, S) batch; input and label share each one.
    sudoku: digit relabel, band/row and stack/column shuffles, transpose if boxes are square.
    maze: one of the 8 dihedral transforms (square grids)."""
    B, S = inputs.shape
    n, dev = grid[0], generator.device  # draw on the generator's device, then move
    if kind == "sudoku":
        br, bc = _box(n)
        rows, cols = _line_order(B, n, br, generator), _line_order(B, n, bc, generator)
        perm = rows[:, :, None] * n + cols[:, None, :]  # (B, n, n) source cell of each cell
        if br == bc:  # a transpose maps 2x3 boxes to 3x2 ones, so 6x6 never transposes
            flip = torch.rand(B, 1, 1, generator=generator, device=dev) < 0.5
            perm = torch.where(flip, perm.transpose(1, 2), perm)
        digits = torch.rand(B, n, generator=generator, device=dev).argsort(1) + 2  # (B, n)
        lut = torch.cat([torch.arange(2, device=dev).expand(B, 2), digits], 1)  # (B, vocab)
    else:
        assert grid[0] == grid[1], "dihedral transforms need a square grid"
        base = torch.arange(S, device=dev).view(n, n)
        maps = torch.stack([base.rot90(k).flip(1) if f else base.rot90(k)
                            for f in (0, 1) for k in range(4)]).view(8, S)
        perm = maps[torch.randint(8, (B,), generator=generator, device=dev)]  # (B, S)
    perm = perm.reshape(B, S).to(inputs.device)
    out = []
    for t in (inputs, labels):
        t = t.gather(1, perm)  # (B, S)
        out.append(lut.to(t.device).gather(1, t.long()).to(t.dtype) if kind == "sudoku" else t)
    return out[0], out[1]


# ---- pictures: show() draws one grid on a matplotlib Axes, for notebooks. matplotlib is imported
# inside it, so the data module itself needs only torch and numpy (as train.py's plots do)

SHOW_COLOURS = dict(
    given="#d9d9d9",  # fill of a Sudoku given (a digit of the question), whose digit is bold black
    answer="white",  # fill of a cell the model fills in, when there is no label to judge it
    right="#b6e3ad",  # fill of an answer cell that agrees with the label (maze: a path cell)
    wrong="#f4a09c",  # fill of any cell that disagrees with the label (or with a given)
    changed="#ff8c00",  # frame of a cell whose token differs from `previous`
    wall="#3c3c3c",  # fill of a maze wall
    ends="#ffe08a",  # fill of the maze's S and G
    ink="black",  # the question's text: given digits, S and G
    pen="#1f4fbf",  # the answer's marks: the model's digits, maze path dots
)


def _show_row(name, value, size=None):
    """One puzzle's tokens as a 1-D int array; a clear error for a batch or a wrong length."""
    a = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    if a.ndim != 1 or (size is not None and len(a) != size):
        want = "S" if size is None else f"S = {size}"
        raise ValueError(f"show: {name} must be one puzzle, a 1-D row of {want} tokens (e.g. "
                         f"test.inputs[i]); got shape {tuple(a.shape)}")
    return a.astype(np.int64)


def show(puzzles, tokens, ax=None, *, inputs=None, label=None, previous=None, fontsize=None):
    """Draw one (S,) token row as a picture on a matplotlib Axes (default: the current one); returns
    the Axes. `puzzles` is a PuzzleSet or a kind string, as in decode(). Colours (SHOW_COLOURS):

    Sudoku  inputs (the question) marks the givens: bold black digits on grey. The other cells are
            the answer: blue digits on white. A blank token is an empty cell, an invalid one '?'.
            Thick lines are the box borders.
    maze    walls are dark squares, S and G bold letters on yellow, path cells 'o' blue dots; these
            come from the tokens themselves, so inputs is not needed.
    label   (the right answer) colours the cells: an answer cell that agrees with it is green
            (maze: a path cell), any cell that disagrees is red (a wrong digit, an overwritten
            given, a path cell missed or added, a wall drawn where there is none). A Sudoku given
            that the tokens overwrite is red even without a label.
    previous (e.g. the prediction one supervision step earlier) frames in orange every cell whose
            token changed since.
    fontsize of the digits and letters; by default they fit the cells of this Axes.

    Each artist's gid names its cell i = row * n + col ("cell i", "text i", "dot i", "frame i")."""
    from matplotlib.patches import Circle, Rectangle
    kind = getattr(puzzles, "kind", puzzles)
    if kind not in ("sudoku", "maze"):
        raise ValueError(f"show: puzzles must be a PuzzleSet or 'sudoku' / 'maze', got {kind!r}")
    t = _show_row("tokens", tokens)
    n = math.isqrt(len(t))
    if n < 2 or n * n != len(t):
        raise ValueError(f"show: {len(t)} tokens do not make a square grid (S = n * n)")
    x, y, before = (None if v is None else _show_row(name, v, len(t)) for name, v in
                    (("inputs", inputs), ("label", label), ("previous", previous)))
    br, bc = _box(n) if kind == "sudoku" else (n, n)
    if br == 1:
        raise ValueError(f"show: a {n}x{n} Sudoku has no boxes (the tasks have n = 4, 6 or 9)")
    if ax is None:
        import matplotlib.pyplot as plt
        ax = plt.gca()
    w, h = ax.get_window_extent().size  # display pixels: size the text to the cells
    cell_pt = min(w, h) / n * 72 / ax.figure.dpi
    fontsize = fontsize or 0.55 * cell_pt
    c = SHOW_COLOURS
    for i, tok in enumerate(t.tolist()):
        row, col = divmod(i, n)
        if kind == "sudoku":
            given = x is not None and x[i] != SUDOKU_BLANK
            text = "" if tok == SUDOKU_BLANK else str(tok - 1) if 2 <= tok <= n + 1 else "?"
            fill = c["given"] if given else c["answer"]
            wrong = (given and tok != x[i]) or (y is not None and tok != y[i])
            right = y is not None and not given and not wrong
        else:
            given = tok in (WALL, START, GOAL)
            text = {START: "S", GOAL: "G", WALL: "", OPEN: "", PATH: ""}.get(tok, "?")
            fill = {WALL: c["wall"], START: c["ends"], GOAL: c["ends"]}.get(tok, c["answer"])
            wrong = y is not None and tok != y[i]
            right = y is not None and not wrong and tok == PATH
            if wrong and tok == WALL:
                text = "#"  # the red fill hides the wall colour: say what the cell holds
        fill = c["wrong"] if wrong else c["right"] if right else fill
        ax.add_patch(Rectangle((col, row), 1, 1, facecolor=fill, edgecolor="#a0a0a0",
                               lw=min(0.8, 0.04 * cell_pt), gid=f"cell {i}"))
        if text:
            ax.text(col + 0.5, row + 0.5, text, ha="center", va="center", fontsize=fontsize,
                    color=c["ink"] if given else c["pen"],
                    fontweight="bold" if given else "normal", gid=f"text {i}")
        if kind == "maze" and tok == PATH:
            ax.add_patch(Circle((col + 0.5, row + 0.5), 0.22, color=c["pen"], gid=f"dot {i}"))
        if before is not None and before[i] != tok:
            ax.add_patch(Rectangle((col + 0.07, row + 0.07), 0.86, 0.86, fill=False,
                                   edgecolor=c["changed"], lw=max(1.0, 0.1 * cell_pt),
                                   gid=f"frame {i}"))
    # the outer border, and the box borders of a Sudoku
    ax.vlines(range(0, n + 1, bc), 0, n, color="black", lw=2, gid="box lines")
    ax.hlines(range(0, n + 1, br), 0, n, color="black", lw=2, gid="box lines")
    ax.set(xlim=(-0.05, n + 0.05), ylim=(n + 0.05, -0.05), aspect="equal")
    ax.set_axis_off()
    return ax
