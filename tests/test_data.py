"""Tests for data.py: generated puzzles are valid and unique, augmentation keeps them valid,
the CSV loader rejects malformed rows, and the download / fallback path works (loopback only)."""
import csv
import hashlib
import itertools
import json
import random
import shutil
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
import data
from puzzles import csv_format, generated, maze, sudoku
from puzzles.common import dihedral_maps

# real rows in the official CSV format (tests/fixtures/README.md says where each comes from)
FIXTURES = Path(__file__).parent / "fixtures"
SUDOKU_ROWS, MAZE_ROWS = FIXTURES / "sudoku-extreme", FIXTURES / "maze-hard"
# the whole real Maze-Hard train.csv, where it is at hand: the download cache of
# `python train.py --task maze`, or the team's shared copy beside the repository
MAZE_1K = next((d / "train.csv" for d in (Path(__file__).parents[1] / "data" / "maze-30x30-hard-1k",
                                          Path(__file__).parents[2] / "shared" / "data" /
                                          "maze-30x30-hard-1k") if (d / "train.csv").exists()),
               None)


# ---- independent checkers (deliberately not data.py's own validation code)

def assert_valid_sudoku(puzzle, answer, n):
    br, bc = sudoku.box(n)
    g = np.asarray(answer).reshape(n, n) - 1  # digits 1..n
    units = [g[r] for r in range(n)] + [g[:, c] for c in range(n)]
    units += [g[r:r + br, c:c + bc].ravel() for r in range(0, n, br) for c in range(0, n, bc)]
    for u in units:
        assert sorted(u.tolist()) == list(range(1, n + 1))
    given = np.asarray(puzzle) != sudoku.BLANK
    assert (np.asarray(puzzle)[given] == np.asarray(answer)[given]).all()


def shortest_path_count(free, n, start, goal):
    """(steps, number of shortest paths) by a plain BFS with path counting."""
    dist, count, frontier = {start: 0}, {start: 1}, [start]
    while frontier:
        nxt = []
        for u in frontier:
            r, c = divmod(u, n)
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                v = rr * n + cc
                if 0 <= rr < n and 0 <= cc < n and free[v]:
                    if v not in dist:
                        dist[v], count[v] = dist[u] + 1, 0
                        nxt.append(v)
                    if dist[v] == dist[u] + 1:
                        count[v] += count[u]
        frontier = nxt
    return dist.get(goal, -1), count.get(goal, 0)


def assert_canonical(x, y, n, min_steps):
    """The label is the benchmark's answer for the input (rule_by_hand), a path of >= min_steps
    steps, and no shorter S-G path exists."""
    x, y = np.asarray(x), np.asarray(y)
    start, goal = int(np.flatnonzero(x == maze.START)[0]), int(np.flatnonzero(x == maze.GOAL)[0])
    steps, _ = shortest_path_count(x != maze.WALL, n, start, goal)
    assert steps >= min_steps
    assert np.array_equal(y, rule_by_hand(x, n))
    assert (y == maze.PATH).sum() == steps - 1


# ---- generated sets (small counts, the same code paths as load_task)

@pytest.fixture(scope="module")
def small_sets():
    out = {}
    for task, count in (("sudoku4", 300), ("sudoku6", 150), ("sudoku", 4), ("maze-small", 200)):
        spec = data.TASKS[task]
        out[task] = generated.generate(task, spec, data.FAMILIES[spec["kind"]], "train", 0, count,
                                       set(), lambda *a: None)
    return out


@pytest.mark.parametrize("task", ["sudoku4", "sudoku6", "sudoku"])
def test_generated_sudoku_valid_unique(small_sets, task):
    x, y, meta = small_sets[task]
    n = data.TASKS[task]["grid"][0]
    assert len({r.tobytes() for r in x}) == len(x)  # deduplicated
    for puzzle, answer in zip(x, y):
        assert_valid_sudoku(puzzle, answer, n)
        sols, guesses = sudoku.solve(puzzle)
        assert len(sols) == 1 and (sols[0] == answer).all()
        if task == "sudoku":
            assert guesses >= 1
    if task == "sudoku":
        assert (meta["rating"] > 0).all()


def test_generated_puzzles_are_minimal(small_sets):
    for puzzle in small_sets["sudoku6"][0][:20]:
        for c in np.flatnonzero(puzzle != sudoku.BLANK):
            fewer = puzzle.copy()
            fewer[c] = sudoku.BLANK
            assert len(sudoku.solve(fewer)[0]) == 2  # every clue is needed


def test_solver_counts_solutions():
    assert len(sudoku.solve(np.ones(16, np.uint8))[0]) == 2  # empty 4x4: capped at 2
    bad = np.ones(16, np.uint8)
    bad[[0, 1]] = 2  # two 1s in the first row
    assert sudoku.solve(bad)[0] == []


def test_generated_mazes_have_the_canonical_answer(small_sets):
    x, y, meta = small_sets["maze-small"]
    n, min_steps = data.TASKS["maze-small"]["grid"][0], data.TASKS["maze-small"]["min_steps"]
    assert len({r.tobytes() for r in x}) == len(x)
    for i in range(len(x)):
        assert_canonical(x[i], y[i], n, min_steps)
        assert maze.shortest_paths(x[i], (n, n))[0] == meta["steps"][i]
    # as in Maze-Hard, the answer is one of several shortest paths: the rule decides
    assert np.median([maze.shortest_paths(r, (n, n))[1] for r in x]) > 1


@pytest.mark.parametrize("n,min_steps", [(7, 10), (9, 16), (16, 40), (30, 109)])
def test_maze_generator_sizes(n, min_steps):
    rng, made = random.Random(n), []
    while len(made) < 3:
        if (m := maze.make(rng, n, min_steps)) is not None:
            made.append(m)
    for x, y, steps in made:
        assert_canonical(x, y, n, min_steps)
        assert steps == (y == maze.PATH).sum() + 1


def test_maze_chain_samples_independent_walls_given_a_long_path():
    """The generator's Markov chain, run long on a 3x3 grid, visits the mazes as often as
    independent walls (density 0.4, S and G on random distinct cells) given a path of >= 4 steps
    would: compared, by exact enumeration, on the distribution of the wall count and of the
    S-G steps."""
    n, density, min_steps, cells = 3, 0.4, 4, 9
    exact_walls, exact_steps = np.zeros(cells), np.zeros(cells)
    for start, goal in itertools.permutations(range(cells), 2):
        others = [c for c in range(cells) if c not in (start, goal)]
        for bits in itertools.product([True, False], repeat=len(others)):
            free = [True] * cells
            for c, b in zip(others, bits):
                free[c] = b
            steps = shortest_path_count(free, n, start, goal)[0]
            if steps >= min_steps:
                walls = bits.count(False)
                p = density ** walls * (1 - density) ** (len(others) - walls)
                exact_walls[walls] += p
                exact_steps[steps] += p
    rng, free = random.Random(0), [True] * cells
    free[4] = False  # S top left, G bottom right, the centre walled: 4 steps either way round
    ends, seen_walls, seen_steps = (0, 8), np.zeros(cells), np.zeros(cells)
    for _ in range(20000):
        ends = maze._chain(rng, free, n, ends, density, min_steps, 5)
        seen_walls[free.count(False)] += 1
        seen_steps[shortest_path_count(free, n, *ends)[0]] += 1
    for seen, exact in ((seen_walls, exact_walls), (seen_steps, exact_steps)):
        np.testing.assert_allclose(seen / seen.sum(), exact / exact.sum(), atol=0.015)


def real_maze_statistics() -> dict:
    """maze.statistics of the whole real Maze-Hard train.csv (1,000 mazes), as stored in the
    fixtures (the file itself is 1.8 MB; the next test checks the stored numbers against it)."""
    return json.loads((MAZE_ROWS / "train_statistics.json").read_text())


def test_generated_mazes_look_like_real_maze_hard():
    """200 generated 30x30 mazes against the real train.csv, on every statistic the generator
    was fitted to, each within its stated tolerance (maze.STATISTICS)."""
    rng, made = random.Random(1), []
    while len(made) < 200:
        if (m := maze.make(rng, 30, 109)) is not None:
            made.append(m)
    ours = maze.statistics(np.stack([m[0] for m in made]), np.stack([m[1] for m in made]))
    real = real_maze_statistics()
    assert set(real) == set(maze.STATISTICS)
    for key, (what, tolerance) in maze.STATISTICS.items():
        assert abs(ours[key] - real[key]) <= tolerance, (what, ours[key], real[key])
    _, real_y, _ = csv_format.read(MAZE_ROWS / "train.csv", maze, (30, 30))
    # 109 steps: the real minimum (the generator's min_steps), met by the fixture's 100 mazes too
    assert min(m[2] for m in made) == 109 == (real_y == maze.PATH).sum(1).min() + 1


@pytest.mark.skipif(MAZE_1K is None, reason="the whole real Maze-Hard train.csv is not in "
                    "data/maze-30x30-hard-1k/: `python train.py --task maze --dry-run` downloads it")
def test_the_stored_real_maze_statistics_are_the_real_files():
    real_x, real_y, _ = csv_format.read(MAZE_1K, maze, (30, 30))
    assert len(real_x) == 1000
    assert maze.statistics(real_x.numpy(), real_y.numpy()) == pytest.approx(real_maze_statistics())
    # and the fixture's rows are its first 100, byte for byte
    assert MAZE_1K.read_bytes().startswith((MAZE_ROWS / "train.csv").read_bytes())


def test_load_generated_disjoint_deterministic_cached(tmp_path, monkeypatch):
    monkeypatch.setitem(data.TASKS["sudoku4"], "n_train", 300)
    monkeypatch.setitem(data.TASKS["sudoku4"], "n_test", 100)
    logs = []
    train, test = data.load_task("sudoku4", cache_dir=tmp_path / "a", log=logs.append)
    assert (len(train), len(test)) == (300, 100) and train.generated and test.generated
    assert "GENERATED" in train.source and train.vocab_size == 6 and train.grid == (4, 4)
    assert train.inputs.dtype == torch.uint8 and train.inputs.shape == (300, 16)
    keys = lambda s: {r.numpy().tobytes() for r in s.inputs}
    assert not keys(train) & keys(test)
    assert (tmp_path / "a" / "generated" / "sudoku4-seed0.npz").exists()
    logs.clear()
    again, _ = data.load_task("sudoku4", cache_dir=tmp_path / "a", log=logs.append)
    assert not logs and torch.equal(again.inputs, train.inputs)  # from the cache, silently
    fresh, fresh_test = data.load_task("sudoku4", cache_dir=tmp_path / "b", log=logs.append)
    assert torch.equal(fresh.inputs, train.inputs) and torch.equal(fresh_test.labels, test.labels)
    other, _ = data.load_task("sudoku4", cache_dir=tmp_path / "b", seed=1, log=logs.append)
    assert not torch.equal(other.inputs, train.inputs)
    monkeypatch.setitem(data.TASKS["sudoku4"], "n_train", 200)  # changed TASKS: regenerate
    assert len(data.load_task("sudoku4", cache_dir=tmp_path / "a", log=logs.append)[0]) == 200


# ---- augmentation

@pytest.mark.parametrize("task", ["sudoku4", "sudoku6", "sudoku"])
def test_sudoku_augment_keeps_validity(small_sets, task):
    x, y, _ = small_sets[task]
    n, rows = data.TASKS[task]["grid"][0], 32
    xb = torch.from_numpy(np.tile(x[:4], (rows // 4, 1)))  # (B, S): 4 puzzles, 8 copies each
    yb = torch.from_numpy(np.tile(y[:4], (rows // 4, 1)))
    ax, ay = data.augment("sudoku", (n, n), xb, yb, torch.Generator().manual_seed(0))
    assert ax.shape == xb.shape and ax.dtype == torch.uint8
    assert len({r.numpy().tobytes() for r in ax}) > rows // 2  # a fresh transform per row
    for puzzle, answer in zip(ax.numpy()[:12], ay.numpy()[:12]):
        assert_valid_sudoku(puzzle, answer, n)
        sols, _ = sudoku.solve(puzzle)
        assert len(sols) == 1 and (sols[0] == answer).all()
    assert ((ax != sudoku.BLANK).sum(1) == (xb != sudoku.BLANK).sum(1)).all()
    bx, by = data.augment("sudoku", (n, n), xb, yb, torch.Generator().manual_seed(0))
    assert torch.equal(ax, bx) and torch.equal(ay, by)
    cx, _ = data.augment("sudoku", (n, n), xb, yb, torch.Generator().manual_seed(1))
    assert not torch.equal(ax, cx)


@pytest.mark.parametrize("n,transposes", [(4, True), (6, False), (9, True)])
def test_sudoku_augment_transposes_square_boxes_only(n, transposes):
    # token = grid row + 2: a relabel keeps rows constant, a transpose makes columns constant
    rows = (torch.arange(n * n) // n + 2).to(torch.uint8).repeat(400, 1)
    ax, _ = data.augment("sudoku", (n, n), rows, rows, torch.Generator().manual_seed(0))
    g = ax.view(-1, n, n)
    kept = (g == g[:, :, :1]).flatten(1).all(1)
    flipped = (g == g[:, :1, :]).flatten(1).all(1)
    assert (kept ^ flipped).all()
    assert 0.4 < flipped.float().mean() < 0.6 if transposes else not flipped.any()


def test_maze_augment_draws_the_rule_for_the_turned_maze(small_sets):
    x, y, _ = small_sets["maze-small"]
    n, rows = data.TASKS["maze-small"]["grid"][0], 64
    xb, yb = torch.from_numpy(x[:1]).repeat(rows, 1), torch.from_numpy(y[:1]).repeat(rows, 1)
    ax, ay = data.augment("maze", (n, n), xb, yb, torch.Generator().manual_seed(0))
    assert len({r.numpy().tobytes() for r in ax}) == 8  # all 8 dihedral transforms show up
    for a, b in zip(ax.numpy(), ay.numpy()):
        assert_canonical(a, b, n, data.TASKS["maze-small"]["min_steps"])
    bx, _ = data.augment("maze", (n, n), xb, yb, torch.Generator().manual_seed(0))
    assert torch.equal(ax, bx)


# ---- official CSV format

def write_csv(path, rows, lineterminator="\r\n"):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator=lineterminator)
        w.writerow(["source", "question", "answer", "rating"])
        w.writerows(rows)


def sudoku_rows(x, y):
    q = lambda r: "".join("." if v == 1 else str(v - 1) for v in r)
    return [["gen", q(a), q(b), "3"] for a, b in zip(x, y)]


def maze_rows(count, seed=0):
    rng, rows = random.Random(seed), []
    while len(rows) < count:
        if (m := maze.make(rng, 30, 109)) is not None:
            rows.append(["gen", *("".join(maze.CHARS[v - 1] for v in t) for t in m[:2]), "0"])
    return rows


@pytest.fixture(scope="module")
def sudoku9_rows(small_sets):
    x, y, _ = small_sets["sudoku"]
    return sudoku_rows(x, y)


def test_csv_loads_lf_and_crlf(tmp_path, sudoku9_rows, monkeypatch):
    monkeypatch.setitem(data.TASKS["sudoku"], "n_train", 3)
    for sep in ("\n", "\r\n"):
        write_csv(tmp_path / "train.csv", sudoku9_rows, sep)
        write_csv(tmp_path / "test.csv", sudoku9_rows[:2], sep)
        train, test = data.load_task("sudoku", data_dir=tmp_path)
        assert len(train) == 3 and len(test) == 2 and not test.generated
        rows = train.meta["subsample_rows"]
        assert train.meta["subsample_seed"] == 0 and len(set(rows.tolist())) == 3
        assert data.decode(train, train.labels[0]).replace(" ", "").replace("|", "") \
            .replace("\n", "").replace("-", "").replace("+", "") == sudoku9_rows[rows[0]][2]


BAD_SUDOKU = [  # (row index, column, edit, expected message)
    (2, 1, lambda s: s[:-1], "question has 80 characters"),
    (1, 1, lambda s: "x" + s[1:], "unknown character 'x'"),
    (3, 2, lambda s: s[:-1] + "0", "unknown character '0'"),
]


@pytest.mark.parametrize("row,col,edit,message", BAD_SUDOKU)
def test_csv_rejects_malformed_sudoku(tmp_path, sudoku9_rows, monkeypatch, row, col, edit, message):
    monkeypatch.setitem(data.TASKS["sudoku"], "n_train", 3)
    rows = [list(r) for r in sudoku9_rows]
    rows[row][col] = edit(rows[row][col])
    write_csv(tmp_path / "train.csv", sudoku9_rows)
    write_csv(tmp_path / "test.csv", rows)
    with pytest.raises(ValueError, match=rf"test\.csv, data row {row + 1}: .*{message}"):
        data.load_task("sudoku", data_dir=tmp_path)


def test_csv_rejects_inconsistent_sudoku_labels(tmp_path, sudoku9_rows):
    rows = [list(r) for r in sudoku9_rows]
    q = rows[1][1]
    c = next(i for i, ch in enumerate(q) if ch != ".")
    rows[1][1] = q[:c] + str(int(q[c]) % 9 + 1) + q[c + 1:]  # a given that the answer contradicts
    a = list(rows[2][2])
    a[0], a[1] = a[1], a[0]  # two answer digits swapped: rows stay fine, columns repeat
    rows[2][2] = "".join(a)
    write_csv(tmp_path / "t.csv", rows[:2])
    with pytest.raises(ValueError, match=rf"t\.csv, data row 2: answer disagrees with given "
                                          rf"digit at cell {c}"):
        csv_format.read(tmp_path / "t.csv", sudoku, (9, 9))
    write_csv(tmp_path / "t.csv", rows[2:])
    with pytest.raises(ValueError, match=r"t\.csv, data row 1: answer is not a valid grid"):
        csv_format.read(tmp_path / "t.csv", sudoku, (9, 9))
    with open(tmp_path / "t.csv", "a") as f:
        f.write("gen,only-two-fields\n")
    with pytest.raises(ValueError, match=r"t\.csv, data row 3: 2 fields, expected 4"):
        csv_format.read(tmp_path / "t.csv", sudoku, (9, 9))


def test_csv_rejects_inconsistent_maze_labels(tmp_path):
    good = maze_rows(2)
    write_csv(tmp_path / "ok.csv", good)
    x, y, _ = csv_format.read(tmp_path / "ok.csv", maze, (30, 30))
    assert x.shape == (2, 900) and (x.numpy() == (y.numpy() != maze.PATH) * y.numpy() +
                                    (y.numpy() == maze.PATH) * maze.OPEN).all()
    wall = good[1][1].index("#")
    cases = [
        (lambda q, a: (q, a[:wall] + "o" + a[wall + 1:]), "label changes cell"),
        (lambda q, a: (q, a.replace("o", " ", 1)), "do not connect S to G"),
        (lambda q, a: (q.replace("S", " "), a), "exactly one S"),
        (lambda q, a: (q, a[:-1] + "x"), "unknown character 'x'"),
    ]
    for edit, message in cases:
        rows = [list(r) for r in good]
        rows[1][1], rows[1][2] = edit(rows[1][1], rows[1][2])
        write_csv(tmp_path / "bad.csv", rows)
        with pytest.raises(ValueError, match=rf"bad\.csv, data row 2: .*{message}"):
            csv_format.read(tmp_path / "bad.csv", maze, (30, 30))


def test_missing_data_dir_file(tmp_path):
    write_csv(tmp_path / "train.csv", [])
    with pytest.raises(FileNotFoundError, match="test.csv not found: data_dir must contain"):
        data.load_task("maze", data_dir=tmp_path)


# ---- download from a local HTTP server, and the offline fallback

def test_download_caches_and_parses(tmp_path, hf_server, sudoku9_rows, monkeypatch):
    root, url, hits = hf_server
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setitem(data.TASKS["sudoku"], "n_train", 4)
    # the official files' row counts, as they are served here
    monkeypatch.setitem(data.OFFICIAL_ROWS, "sudoku", {"train.csv": 4, "test.csv": 2})
    monkeypatch.setitem(data.OFFICIAL_ROWS, "maze", {"train.csv": 3, "test.csv": 2})
    for repo, rows in (("sapientinc/sudoku-extreme", sudoku9_rows),
                       ("sapientinc/maze-30x30-hard-1k", maze_rows(3))):
        folder = root / "datasets" / repo / "resolve" / "main"
        folder.mkdir(parents=True)
        write_csv(folder / "train.csv", rows)
        write_csv(folder / "test.csv", rows[:2])
    cache = tmp_path / "cache"
    train, test = data.load_task("sudoku", cache_dir=cache, log=lambda *a: None)
    assert sorted(hits) == ["/datasets/sapientinc/sudoku-extreme/resolve/main/test.csv",
                            "/datasets/sapientinc/sudoku-extreme/resolve/main/train.csv"]
    assert (cache / "sudoku-extreme" / "train.csv").exists() and not train.generated
    assert len(train) == 4 and len(test) == 2
    assert test.source.startswith("official: sapientinc/sudoku-extreme test.csv")
    again, _ = data.load_task("sudoku", cache_dir=cache, log=lambda *a: None)
    assert len(hits) == 2 and torch.equal(again.inputs, train.inputs)  # served from the cache
    train, test = data.load_task("maze", cache_dir=cache, log=lambda *a: None)
    assert (len(train), len(test), train.vocab_size, train.grid) == (3, 2, 6, (30, 30))
    assert len(hits) == 4 and not list(cache.rglob("*.part"))
    served = root / "datasets/sapientinc/maze-30x30-hard-1k/resolve/main/test.csv"
    assert test.meta["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()


def test_a_short_official_file_is_never_the_benchmark(tmp_path, hf_server, monkeypatch):
    """A test.csv cut at a line end (served without Content-Length, so the download cannot tell)
    has fewer rows than the official file: it is refused, not used as the test set."""
    root, url, hits = hf_server
    monkeypatch.setenv("HF_ENDPOINT", url)
    folder = root / "datasets" / "sapientinc/maze-30x30-hard-1k" / "resolve" / "main"
    folder.mkdir(parents=True)
    write_csv(folder / "train.csv", maze_rows(3))
    write_csv(folder / "test.csv", maze_rows(2))
    monkeypatch.setitem(data.OFFICIAL_ROWS, "maze", {"train.csv": 3, "test.csv": 1000})
    with pytest.raises(ValueError, match=r"test\.csv has 2 data rows, the official file 1,000: it "
                                         r"is cut short"):
        data.load_task("maze", cache_dir=tmp_path, log=lambda *a: None)


@pytest.mark.parametrize("task", ["sudoku", "maze"])
def test_unreachable_endpoint_falls_back_to_generated(tmp_path, monkeypatch, task):
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setitem(data.TASKS[task], "n_train", 3)
    monkeypatch.setitem(data.TASKS[task], "n_test", 2)
    logs = []
    train, test = data.load_task(task, cache_dir=tmp_path, log=logs.append)
    assert train.generated and test.generated and "GENERATED" in train.source
    assert any("NOT the benchmark" in line for line in logs)
    assert (len(train), len(test)) == (3, 2)
    assert (tmp_path / "generated" / f"{task}-seed0.npz").exists()
    assert not list(tmp_path.glob("*/*.csv"))  # nothing half-downloaded looks like data
    for a, b in zip(train.inputs.numpy(), train.labels.numpy()):
        if task == "maze":
            assert_canonical(a, b, 30, 109)
        else:
            assert_valid_sudoku(a, b, 9)
            assert sudoku.solve(a)[1] >= 1
    if task == "sudoku":
        assert (train.meta["rating"] >= 1).all() and (train.meta["clues"] >= 17).all()


# ---- real Sudoku-Extreme rows (the fixtures)

def test_real_sudoku_extreme_rows(tmp_path):
    """The first 20 rows of the real 1k train.csv and of test_hard (CRLF line ends, as exported),
    the train rows repeated to the 1,000 rows that the 1k subsample draws from."""
    header, *rows = (SUDOKU_ROWS / "train.csv").read_bytes().splitlines(keepends=True)
    (tmp_path / "train.csv").write_bytes(header + b"".join(rows[i % 20] for i in range(1000)))
    shutil.copy(SUDOKU_ROWS / "test.csv", tmp_path / "test.csv")
    train, test = data.load_task("sudoku", data_dir=tmp_path)
    assert (len(train), len(test), train.vocab_size) == (1000, 20, 11)
    assert sorted(train.meta["subsample_rows"].tolist()) == list(range(1000))
    assert "NOT the whole official test set of 422,786" in test.source
    for s in (train, test):
        assert 1 <= s.inputs.min() and s.inputs.max() <= 10 and 2 <= s.labels.min()
        assert s.labels.max() <= 10 and not s.generated
    for s in (train, test):  # every real answer is a valid grid that keeps its puzzle's givens
        for a, b in zip(s.inputs.numpy(), s.labels.numpy()):
            assert_valid_sudoku(a, b, 9)
    with open(SUDOKU_ROWS / "test.csv", newline="") as f:
        first = list(csv.reader(f))[1]
    text = data.decode(test, test.inputs[0])
    assert text.splitlines()[0] == " ".join(first[1][:3]) + " | " + " ".join(first[1][3:6]) + \
        " | " + " ".join(first[1][6:9])
    assert "".join(ch for ch in data.decode(test, test.labels[0]) if ch.isdigit()) == first[2]
    assert test.meta["rating"][0] == float(first[3])


# ---- pictures: show() on an Agg figure, read back artist by artist

def drawn(ax):
    """{gid: artist} of the patches (cells, frames, dots) and texts show() put on ax."""
    return {a.get_gid(): a for a in [*ax.patches, *ax.texts] if a.get_gid()}


def new_axes():
    figure = pytest.importorskip("matplotlib.figure")
    return figure.Figure(figsize=(3, 3)).add_subplot()


def colour_of(name):
    from matplotlib.colors import to_rgba
    return to_rgba(data.SHOW_COLOURS[name])


# a 4x4 answer (digit d is token d + 1), its puzzle with four givens, and a prediction
ANSWER4 = torch.tensor([1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1]) + 1
GIVEN4 = (0, 5, 10, 15)


def puzzle4():
    x = torch.full_like(ANSWER4, sudoku.BLANK)
    x[list(GIVEN4)] = ANSWER4[list(GIVEN4)]
    return x


def test_show_sudoku_colours_givens_right_wrong_changed():
    x = puzzle4()
    pred = ANSWER4.clone()
    pred[1] = 3 + 1  # a wrong digit in an answer cell
    pred[15] = 2 + 1  # a given overwritten
    pred[7] = sudoku.BLANK  # left blank
    before = pred.clone()
    before[1], before[2] = 2 + 1, sudoku.BLANK  # cells 1 and 2 changed since
    a = drawn(data.show("sudoku", pred, new_axes(), inputs=x, label=ANSWER4, previous=before))
    assert a["cell 0"].get_facecolor() == colour_of("given")  # a right given is just a given
    assert a["text 0"].get_text() == "1" and a["text 0"].get_fontweight() == "bold"
    assert a["cell 1"].get_facecolor() == colour_of("wrong")
    assert a["text 1"].get_text() == "3" and a["text 1"].get_fontweight() == "normal"
    assert a["text 1"].get_color() == data.SHOW_COLOURS["pen"]
    assert a["cell 2"].get_facecolor() == colour_of("right")
    assert a["cell 15"].get_facecolor() == colour_of("wrong")
    assert a["cell 7"].get_facecolor() == colour_of("wrong") and "text 7" not in a
    frames = {g for g in a if g.startswith("frame")}
    assert frames == {"frame 1", "frame 2"}
    assert a["frame 1"].get_edgecolor() == colour_of("changed") and not a["frame 1"].get_fill()
    right = [i for i in range(16) if i not in GIVEN4 + (1, 7)]
    assert all(a[f"cell {i}"].get_facecolor() == colour_of("right") for i in right)


def test_show_sudoku_without_label():
    x = puzzle4()
    pred = ANSWER4.clone()
    pred[0] = 2 + 1  # overwrites the given 1: wrong even without a label
    a = drawn(data.show("sudoku", pred, new_axes(), inputs=x))
    assert a["cell 0"].get_facecolor() == colour_of("wrong")
    assert a["cell 5"].get_facecolor() == colour_of("given")
    assert all(a[f"cell {i}"].get_facecolor() == colour_of("answer")
               for i in range(16) if i not in GIVEN4)
    assert not any(g.startswith("frame") for g in a)
    # the puzzle itself: blanks are empty cells, the givens' digits bold
    a = drawn(data.show("sudoku", x, new_axes(), inputs=x))
    assert {g for g in a if g.startswith("text")} == {f"text {i}" for i in GIVEN4}


@pytest.mark.parametrize("n, rows, cols", [(4, [0, 2, 4], [0, 2, 4]), (6, [0, 2, 4, 6], [0, 3, 6]),
                                           (9, [0, 3, 6, 9], [0, 3, 6, 9])])
def test_show_sudoku_box_lines(n, rows, cols):
    ax = data.show("sudoku", np.full(n * n, sudoku.BLANK), new_axes())
    lines = [c for c in ax.collections if c.get_gid() == "box lines"]
    xs = sorted({round(s[0][0], 6) for c in lines for s in c.get_segments() if s[0][0] == s[1][0]})
    ys = sorted({round(s[0][1], 6) for c in lines for s in c.get_segments() if s[0][1] == s[1][1]})
    assert (xs, ys) == (cols, rows)
    assert sum(g.startswith("cell") for g in drawn(ax)) == n * n


def test_show_maze_path_right_missed_added():
    x, y, _ = maze.make(random.Random(3), 7, 12)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    path = torch.nonzero(y == maze.PATH).flatten().tolist()
    open_cell = int(torch.nonzero(y == maze.OPEN)[0])
    wall = int(torch.nonzero(y == maze.WALL)[0])
    pred = y.clone()
    pred[path[0]] = maze.OPEN  # missed
    pred[open_cell] = maze.PATH  # added
    pred[wall] = maze.OPEN  # a wall erased
    a = drawn(data.show("maze", pred, new_axes(), inputs=x, label=y, previous=y))
    assert a[f"cell {path[0]}"].get_facecolor() == colour_of("wrong") and f"dot {path[0]}" not in a
    assert a[f"cell {open_cell}"].get_facecolor() == colour_of("wrong") and f"dot {open_cell}" in a
    assert a[f"cell {wall}"].get_facecolor() == colour_of("wrong")
    for i in path[1:]:
        assert a[f"cell {i}"].get_facecolor() == colour_of("right") and f"dot {i}" in a
    walls = torch.nonzero(y == maze.WALL).flatten().tolist()
    assert all(a[f"cell {i}"].get_facecolor() == colour_of("wall") for i in walls if i != wall)
    s, g = int(torch.nonzero(y == maze.START)[0]), int(torch.nonzero(y == maze.GOAL)[0])
    assert (a[f"text {s}"].get_text(), a[f"text {g}"].get_text()) == ("S", "G")
    assert a[f"cell {s}"].get_facecolor() == colour_of("ends")
    assert {g for g in a if g.startswith("frame")} == {f"frame {i}" for i in (path[0], open_cell,
                                                                               wall)}
    # a wall where there is none: red, and marked '#' since the red hides the wall colour
    pred = y.clone()
    pred[open_cell] = maze.WALL
    a = drawn(data.show("maze", pred, new_axes(), label=y))
    assert a[f"cell {open_cell}"].get_facecolor() == colour_of("wrong")
    assert a[f"text {open_cell}"].get_text() == "#"


def test_show_maze_30x30():
    rng = random.Random(0)
    while (made := maze.make(rng, 30, 40)) is None:
        pass
    a = drawn(data.show("maze", made[1], new_axes(), label=made[1]))
    assert sum(g.startswith("cell") for g in a) == 900
    assert sum(g.startswith("dot") for g in a) == (made[1] == maze.PATH).sum()


@pytest.mark.parametrize("kind, tokens, kw, message", [
    ("sudoku", torch.ones(2, 16, dtype=torch.long), {}, r"tokens must be one puzzle.*\(2, 16\)"),
    ("sudoku", torch.ones(15, dtype=torch.long), {}, "do not make a square grid"),
    ("sudoku", torch.ones(16, dtype=torch.long), {"label": torch.ones(36)}, r"label .*S = 16"),
    ("maze", torch.ones(49, dtype=torch.long), {"previous": torch.ones(1, 49)}, "previous"),
    ("sudoku", torch.ones(25, dtype=torch.long), {}, "5x5 Sudoku has no boxes"),
    ("chess", torch.ones(16, dtype=torch.long), {}, "one of 'sudoku', 'maze'"),
])
def test_show_rejects_bad_shapes(kind, tokens, kw, message):
    with pytest.raises(ValueError, match=message):
        data.show(kind, tokens, new_axes(), **kw)


def test_data_does_not_import_matplotlib():
    code = "import sys, data; assert 'matplotlib' not in sys.modules, 'data imported matplotlib'"
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], check=True)


# ---- the benchmark's answer among many shortest paths: the canonical BFS path

def open_maze(n):
    """An n x n maze without walls, S top left and G bottom right: C(2n-2, n-1) shortest paths."""
    x = np.full(n * n, maze.OPEN, np.uint8)
    x[0], x[-1] = maze.START, maze.GOAL
    return x


def test_canonical_path_tries_down_left_right_up():
    x = open_maze(3)
    assert maze.canonical_path(x, 3) == [0, 3, 6, 7, 8]  # down, down, right, right
    x[3] = maze.WALL  # down is blocked: right first, then down as soon as it can
    assert maze.canonical_path(x, 3) == [0, 1, 4, 7, 8]
    x[1] = maze.WALL
    assert maze.canonical_path(x, 3) is None


def test_a_shortest_but_not_canonical_label_is_accepted_and_counted(tmp_path):
    x = open_maze(5)
    canonical = maze.canonical_label(x, 5)
    other = x.copy()
    other[[1, 2, 3, 4, 9, 14, 19]] = maze.PATH  # right along the top, then down: also 8 steps
    assert maze.problem((5, 5), np.stack([x, x]), np.stack([canonical, other])) is None
    assert maze.stats(np.stack([x, x]), np.stack([canonical, other]))["canonical"].tolist() == \
        [True, False]
    longer = canonical.copy()
    longer[[1, 11]] = maze.PATH  # a detour cell too: connected, but not a shortest path
    assert maze.problem((5, 5), x[None], longer[None]) == \
        (0, "the path has 10 steps, but the shortest S-G path has 8")


def test_every_real_maze_label_is_the_canonical_path():
    """The fixture's 100 train and 20 test mazes (the first rows of the real files)."""
    logs = []
    train, test = data.load_task("maze", data_dir=MAZE_ROWS, log=logs.append)
    assert (len(train), len(test)) == (100, 20)
    assert train.meta["canonical"].all() and test.meta["canonical"].all()
    assert not any("canonical" in line for line in logs)
    assert "NOT the whole official test set of 1,000" in test.source
    # and the rule really decides: each real maze has many shortest paths
    assert all(maze.shortest_paths(x, (30, 30))[1] >= 96 for x in train.inputs[:20].numpy())
    ax, ay = data.augment("maze", (30, 30), train.inputs[:20], train.labels[:20],
                          torch.Generator().manual_seed(0))
    assert all(np.array_equal(b, rule_by_hand(a, 30)) for a, b in zip(ax.numpy(), ay.numpy()))


def rule_by_hand(x, n):
    """The benchmark's label, written independently of puzzles/maze.py: BFS from S over (row, col)
    pairs, neighbours tried down, left, right, up, first discoverer is the parent."""
    cells = {(i // n, i % n): v for i, v in enumerate(np.asarray(x).tolist())}
    start = next(c for c, v in cells.items() if v == maze.START)
    goal = next(c for c, v in cells.items() if v == maze.GOAL)
    parent, todo = {start: None}, deque([start])
    while todo:
        r, c = todo.popleft()
        for nxt in ((r + 1, c), (r, c - 1), (r, c + 1), (r - 1, c)):
            if cells.get(nxt, maze.WALL) != maze.WALL and nxt not in parent:
                parent[nxt] = (r, c)
                todo.append(nxt)
    y, cell = np.asarray(x).copy(), parent[goal]
    while cell != start:
        y[cell[0] * n + cell[1]] = maze.PATH
        cell = parent[cell]
    return y


def test_maze_augment_draws_the_rules_answer_for_every_transform():
    """Mazes with many shortest paths (sparse walls), each augmented in a batch that meets all 8
    transforms: the label is the rule applied to the transformed maze, not the turned label."""
    rng, n, rows = np.random.default_rng(0), 9, []
    while len(rows) < 6:
        x = np.where(rng.random(n * n) < 0.2, maze.WALL, maze.OPEN).astype(np.uint8)
        s, g = rng.choice(n * n, 2, replace=False)
        x[s], x[g] = maze.START, maze.GOAL
        if maze.canonical_path(x, n) is not None and maze.shortest_paths(x, (n, n))[1] > 1:
            rows.append(x)
    x = torch.from_numpy(np.stack(rows)).repeat(40, 1)  # (240, 81)
    y = torch.from_numpy(np.stack([rule_by_hand(r, n) for r in rows])).repeat(40, 1)
    ax, ay = data.augment("maze", (n, n), x, y, torch.Generator().manual_seed(0))
    maps = dihedral_maps(n)
    seen = {next(k for k in range(8) if torch.equal(a, x[i][maps[k]])) for i, a in enumerate(ax)}
    assert seen == set(range(8))
    turned = 0
    for i in range(len(ax)):
        assert np.array_equal(ay[i].numpy(), rule_by_hand(ax[i].numpy(), n))
        k = next(k for k in range(8) if torch.equal(ax[i], x[i][maps[k]]))
        turned += not torch.equal(ay[i], y[i][maps[k]])
    assert turned > 0  # the turned label would have been wrong for some: the test can fail
