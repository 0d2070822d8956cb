"""Tests for puzzles/arc.py and arc_replay.py: the token layout and its crop, the augmentations
and their inverses, the official build (identifiers against the golden file, and a naive
transcription of the builder for the draws, the dedup and the offsets), the sampler, the
validation errors and the scoring."""
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from lib import config
from puzzles import arc, arc_replay, arc_score

# in the repository: 20 Mini-ARC tasks, 9 ARC-AGI-1 training and 8 ARC-AGI-2 evaluation tasks, and
# the official builder's identifier maps (tests/fixtures/README.md says where each comes from)
FIXTURES = Path(__file__).parent / "fixtures"
MINI_DIR, FEW_ARC_DIR = FIXTURES / "mini-arc", FIXTURES / "arc-agi"
GOLDEN = FIXTURES / "golden" / "arc_identifiers.json"
# the official builds need all ten Kaggle files (11 MB, not in the repository): the cache that
# `python train.py --task arc1` downloads, or the team's shared copy beside the repository
ARC_DIR = next((d for d in (Path(__file__).parents[1] / "data" / "arc-agi",
                            Path(__file__).parents[2] / "shared" / "data" / "arc-agi")
                if d.is_dir() and len(list(d.glob("arc-agi_*.json"))) == 10), None)
needs_full_arc = pytest.mark.skipif(
    ARC_DIR is None, reason="the ten ARC-AGI files are not in data/arc-agi/: run "
                            "`python train.py --task arc1 --dry-run` once to download them (11 MB)")


def task(name, pairs, tests, subset="hand"):
    grid = lambda g: np.array(g, np.uint8)
    return arc.Task(name, subset, {"train": [(grid(a), grid(b)) for a, b in pairs],
                                   "test": [(grid(a), grid(b)) for a, b in tests]})


# ---- a naive transcription of the official builder (dataset/build_arc_dataset.py), for the fast
# replay

# the builder's transforms 0..7, written out again: identity, rot90 x1/x2/x3, fliplr, flipud,
# transpose, fliplr(rot90)
DIHEDRAL = [lambda g: g, np.rot90, lambda g: np.rot90(g, 2), lambda g: np.rot90(g, 3),
            np.fliplr, np.flipud, np.transpose, lambda g: np.fliplr(np.rot90(g))]


def reference_build(subsets, test_set, seed, num_aug, canvas):
    """(names, copies per group, train offsets (E, 2), train examples as (inputs, labels)) made
    the slow way: the legacy RandomState's own randint/permutation/shuffle calls, and dedup by
    the builder's puzzle hash (the sorted sha256 of every grid's shape bytes and cells)."""
    rs = np.random.RandomState(seed)

    def grid_hash(g):
        return hashlib.sha256(bytes(g.shape) + g.tobytes()).hexdigest()

    def puzzle_hash(pairs):
        return hashlib.sha256("|".join(sorted(f"{grid_hash(a)}|{grid_hash(b)}"
                                              for a, b in pairs)).encode()).hexdigest()

    groups = []
    for subset in subsets:
        tasks = list(subset)
        rs.shuffle(tasks)
        for t in tasks:
            pairs = [p for ps in t.parts.values() for p in ps]
            copies, seen = [(0, np.arange(10, dtype=np.uint8))], {puzzle_hash(pairs)}
            for _ in range(arc.RETRIES * num_aug if num_aug else 0):
                k = rs.randint(0, 8)
                m = np.concatenate([[0], rs.permutation(np.arange(1, 10, dtype=np.uint8))]
                                   ).astype(np.uint8)  # uint8 like the grids: same hashes
                h = puzzle_hash([(DIHEDRAL[k](m[a]), DIHEDRAL[k](m[b])) for a, b in pairs])
                if h not in seen:
                    seen.add(h)
                    copies.append((k, m))
                if len(copies) >= num_aug + 1:
                    break
            groups.append((t, copies))
    names = ["<blank>"]
    for t, copies in groups:
        names += [t.name] + [f"{t.name}|||t{k}|||{''.join(map(str, m))}" for k, m in copies[1:]]
    offsets, inputs, labels = [], [], []
    for t, copies in groups:
        train = [p for part, ps in t.parts.items() for p in ps
                 if part == "train" or t.subset != test_set]
        for k, m in copies:
            keep = rs.randint(0, len(train))
            for i, (a, b) in enumerate(train):
                a, b = DIHEDRAL[k](m[a]), DIHEDRAL[k](m[b])
                r = c = 0
                if i != keep:
                    r = rs.randint(0, canvas - max(a.shape[0], b.shape[0]) + 1)
                    c = rs.randint(0, canvas - max(a.shape[1], b.shape[1]) + 1)
                offsets.append((r, c))
                for grid, out in ((a, inputs), (b, labels)):  # pad, then the EOS border
                    (h, w) = grid.shape
                    x = np.pad(grid + 2, ((r, canvas - r - h), (c, canvas - c - w)))
                    if r + h < canvas:
                        x[r + h, c:c + w] = 1
                    if c + w < canvas:
                        x[r:r + h, c + w] = 1
                    out.append(x.ravel())
    return names, [len(c) for _, c in groups], np.array(offsets), (inputs, labels)


def assert_same_build(plan, subsets, test_set, seed, num_aug, canvas):
    names, copies, offsets, (inputs, labels) = reference_build(subsets, test_set, seed, num_aug,
                                                               canvas)
    assert plan.names == names
    assert plan.copies.tolist() == copies
    assert (plan.splits["train"].offsets == offsets).all()
    rows = np.arange(len(offsets))
    x, y, ids = arc.examples(plan, "train", rows)
    assert (x == np.stack(inputs)).all() and (y == np.stack(labels)).all()
    split = plan.splits["train"]
    assert (ids == np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices))).all()


# ---- tokens and crop (about 0.1 s)

def test_encode_crop_round_trip_every_shape():
    rng = np.random.default_rng(0)
    for h in range(1, 31):
        for w in range(1, 31):
            g = rng.integers(0, 10, (h, w)).astype(np.uint8)
            t = arc.encode(g)
            assert t.shape == (900,) and t.dtype == np.uint8
            assert (t == arc.EOS).sum() == (w if h < 30 else 0) + (h if w < 30 else 0)
            assert (arc.crop(t) == g).all() and arc.crop(t).shape == (h, w)
            r, c = rng.integers(0, 31 - h), rng.integers(0, 31 - w)
            shifted = arc.encode(g, (r, c))
            assert (shifted.reshape(30, 30)[r:r + h, c:c + w] == g + 2).all()
            assert (arc.crop(shifted, offset=(r, c)) == g).all()


def test_eos_border_by_hand():
    g = np.array([[0, 1, 2], [3, 4, 9]], np.uint8)
    assert arc.encode(g, canvas=5).reshape(5, 5).tolist() == [
        [2, 3, 4, 1, 0],
        [5, 6, 11, 1, 0],
        [1, 1, 1, 0, 0],  # the corner below-right stays PAD
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0]]
    assert arc.encode(g, (1, 2), canvas=5).reshape(5, 5).tolist() == [
        [0, 0, 0, 0, 0],
        [0, 0, 2, 3, 4],  # the EOS column would be column 5: outside, so none
        [0, 0, 5, 6, 11],
        [0, 0, 1, 1, 1],
        [0, 0, 0, 0, 0]]


def test_crop_of_malformed_predictions():
    def tokens(rows):
        out = np.zeros((30, 30), np.uint8)
        for r, row in enumerate(rows):
            out[r, :len(row)] = row
        return out.ravel()
    assert arc.crop(tokens([[1, 5]])).shape == (0, 0)  # no colour at the top-left: empty
    assert arc.crop(tokens([])).shape == (0, 0)
    # widths 4, 2, 2 from the top-left: 4x1 (area 4) < 2x3 (area 6) -> the 3x2 block
    ragged = tokens([[3, 3, 3, 3, 1], [4, 4, 1], [5, 5, 0, 7], [1]])
    assert arc.crop(ragged).tolist() == [[1, 1], [2, 2], [3, 3]]
    # equal areas: the first (shortest) one wins, as in the official row scan
    assert arc.crop(tokens([[2, 2, 2, 2], [2, 2, 1], [1]])).shape == (1, 4)
    assert arc.crop(np.full(900, 11, np.uint8)).shape == (30, 30)  # no EOS: the whole canvas


# ---- augmentations and the random stream (about 0.4 s)

def test_dihedral_transforms_and_inverses():
    g = np.arange(6).reshape(2, 3)
    assert all((arc_replay.dihedral(g, t) == DIHEDRAL[t](g)).all() for t in range(8))
    assert arc_replay.dihedral(g, 7).tolist() == [[5, 2], [4, 1], [3, 0]]  # anti-diagonal
    assert [arc_replay.dihedral(g, t).shape for t in range(8)] == [
        (2, 3), (3, 2), (2, 3), (3, 2), (2, 3), (2, 3), (3, 2), (3, 2)]
    assert all(arc_replay.COMPOSE[arc_replay.DIHEDRAL_INVERSE[t], t] == 0 for t in range(8))
    rng = np.random.default_rng(1)
    for t in range(8):
        for _ in range(5):
            mapping = np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)
            grid = rng.integers(0, 10, rng.integers(1, 31, 2)).astype(np.uint8)
            copy = arc.augment(grid, t, mapping)
            assert (copy == arc_replay.dihedral(mapping[grid], t)).all()
            assert (arc.invert(copy, t, mapping) == grid).all()
            task_name, t2, m2 = arc.parse_name(f"abc|||t{t}|||{''.join(map(str, mapping))}")
            assert (task_name, t2, m2.tolist()) == ("abc", t, mapping.tolist())
    task_name, t, m = arc.parse_name("abc")
    assert (task_name, t, m.tolist()) == ("abc", 0, list(range(10)))


def test_stream_is_numpys_legacy_generator():
    """The decoded words give what RandomState(42)'s own calls give, in the builder's order."""
    rs, mine = np.random.RandomState(42), arc_replay.LegacyStream(42)
    items = list(range(400))
    want = list(items)
    rs.shuffle(want)
    mine.shuffle(items)
    assert items == want
    t, maps = mine.peek_trials(3000)
    mine.take_trials(2500)
    for k in range(2500):
        assert rs.randint(0, 8) == t[k]
        assert rs.permutation(np.arange(1, 10, dtype=np.uint8)).tolist() == maps[k, 1:].tolist()
    assert [rs.randint(0, n) for n in (1, 2, 7, 30, 9)] == [mine.below(n - 1)
                                                           for n in (1, 2, 7, 30, 9)]


# ---- dedup (about 0.5 s)

def test_duplicate_copies_of_symmetric_tasks():
    square = task("one", [([[3, 3], [3, 3]], [[3, 3], [3, 3]])], [([[3]], [[3, 3], [3, 3]])])
    wide = task("wide", [([[3, 3, 3]], [[3, 3, 3]])], [([[3]], [[3, 3, 3]])])
    two = task("two", [([[3, 3, 3]], [[5, 5, 5]])], [([[3]], [[5]])])
    plan = arc.build_plan([[square, wide, two]], "none", num_aug=1000)
    copies = dict(zip([t.name for t in plan.tasks], plan.copies.tolist()))
    # every transform fixes a one-colour square: only the colour's 9 images differ; the row
    # turns into a column under 4 of the 8 transforms: 2 x 9; two colours: 2 x 9 x 8
    assert copies == {"one": 9, "wide": 18, "two": 144}
    assert len(set(plan.names)) == len(plan.names) == 1 + 9 + 18 + 144
    assert_same_build(plan, [[square, wide, two]], "none", 42, 1000, 30)


def test_build_equals_the_naive_builder_on_real_tasks():
    """Shuffle, aug() draws, dedup, names, offsets and tokens, against reference_build: the
    fixtures' Mini-ARC tasks at canvas 6, and their ARC-AGI-1 training + ARC-AGI-2 evaluation
    tasks (one of them, 6f8cd79b, symmetric enough to be deduplicated to 18 copies)."""
    plan = arc.build_mini_arc(MINI_DIR, num_aug=20)
    assert len(plan.tasks) == 20
    assert_same_build(plan, [arc.load_mini_arc(MINI_DIR)], "mini-arc", 42, 20, 6)
    subsets = [arc.load_kaggle(FEW_ARC_DIR, s) for s in ("training", "evaluation2")]
    plan = arc.build_plan(subsets, "evaluation2", seed=7, num_aug=1000)
    assert_same_build(plan, subsets, "evaluation2", 7, 1000, 30)
    copies = dict(zip([t.name for t in plan.tasks], plan.copies.tolist()))
    assert copies["6f8cd79b"] == 18 and max(copies.values()) == 1001
    test = plan.splits["test"]
    assert (test.offsets == 0).all()
    assert [plan.tasks[g].subset for g in test.groups] == ["evaluation2"] * 8


# ---- the official builds, one each (about 4 s for ARC-1, 5 s for ARC-2; offsets skipped)

@pytest.fixture(scope="module", params=["arc1", "arc2"])
def official(request):
    start = time.perf_counter()
    plan = arc.build_arc(ARC_DIR, request.param, offsets=False)
    print(f"{request.param} build without offsets: {time.perf_counter() - start:.1f} s")
    return request.param, plan, json.loads(GOLDEN.read_text())[request.param]


@needs_full_arc
def test_identifiers_equal_the_golden_file(official):
    version, plan, gold = official
    assert len(plan.names) == gold["num_puzzle_identifiers"] == {"arc1": 876_406,
                                                                 "arc2": 1_191_730}[version]
    assert plan.sha256_names() == gold["sha256_names"]
    assert plan.names[:500] == gold["first_names"] and plan.names[-500:] == gold["last_names"]
    for name in ("train", "test"):
        s = plan.splits[name]
        assert {"puzzles": len(s.puzzle_identifiers), "examples": len(s.example_pair),
                "groups": len(s.groups)} == gold["splits"][name]
    test = plan.splits["test"]
    assert sorted(plan.tasks[g].name for g in test.groups) == sorted(gold["test_task_ids"])
    # the test split reuses the train split's ids: the copies' embeddings learned on their demos
    assert set(test.puzzle_identifiers.tolist()) <= set(
        plan.splits["train"].puzzle_identifiers.tolist())


@needs_full_arc
def test_build_statistics_of_the_spec(official):
    version, plan, _ = official
    train = plan.splits["train"]
    steps = {"arc1": 518_226, "arc2": 722_098}[version]  # pretrain.py's total_steps
    assert arc.planned_steps(train, epochs=100_000, batch_size=768) == steps
    short = {plan.tasks[g].name: int(n) for g, n in enumerate(plan.copies) if n < 1001}
    assert len(short) == {"arc1": 164, "arc2": 175}[version]
    assert min(short, key=short.get) == "332efdb3" and short["332efdb3"] == 9
    assert short["6f8cd79b"] == 18
    pairs_per_group = [len(train.pairs[g]) for g in train.groups]
    assert sum(pairs_per_group) == {"arc1": 3988, "arc2": 5573}[version]
    if version == "arc1":
        assert round(train.mean_puzzle_examples, 4) == 4.1458


@needs_full_arc
def test_presets_take_the_official_schedule(official):
    version, plan, _ = official
    for model in ("trm", "hrm"):
        preset = config.PRESETS[model][version]
        for key, epochs in (("steps", 100_000), ("eval_every", 10_000)):
            assert preset[key] == arc.planned_steps(plan.splits["train"], epochs,
                                                    preset["batch_size"])
        assert (preset["lr"], preset["emb_lr"], preset["weight_decay"],
                preset["emb_weight_decay"], preset["batch_size"]) == (1e-4, 1e-2, 0.1, 0.1, 768)
    trm = config.PRESETS["trm"][version]
    assert (trm["net"], trm["n"], trm["T"], trm["ema"]) == ("att", 4, 3, 0.999)


@needs_full_arc
def test_sampler_on_the_official_build(official):
    """One epoch of ARC-1 / ARC-2 batches: full, each group at most once (milliseconds)."""
    _, plan, _ = official
    train = plan.splits["train"]
    batches = list(arc.train_batches(train, seed=0, batch_size=768))
    puzzles = np.searchsorted(train.puzzle_indices, np.concatenate(batches), side="right") - 1
    groups = np.searchsorted(train.group_indices, np.unique(puzzles), side="right") - 1
    assert all(len(b) == 768 for b in batches) and len(groups) == len(set(groups.tolist()))
    x, y, ids = arc.examples(plan, "train", batches[0][:4])
    assert x.shape == y.shape == (4, 900) and (ids > 0).all()


# ---- the sampler and examples on a small build (about 0.3 s)

@pytest.fixture(scope="module")
def small():
    """12 tasks with 1-3 demos and 1-2 test inputs; the 6 of subset "b" are the test set."""
    def make(i, c):
        demos = [([[c, 0, j]], [[0, c]]) for j in range(1 + i % 3)]
        tests = [([[c] * (j + 1)], [[c, 1], [j, 0]]) for j in range(1 + i % 2)]
        return task(f"t{i}", demos, tests, subset=("a", "b")[i % 2])
    tasks = [make(i, i % 9 + 1) for i in range(12)]
    return arc.build_plan([tasks[:6], tasks[6:]], "b", num_aug=7, canvas=5)


def test_train_batches_official_epoch(small):
    train = small.splits["train"]
    sizes = np.diff(train.puzzle_indices)
    all_batches = []
    for seed in (0, 1):
        batches = list(arc.train_batches(train, seed=seed, iteration=3, epochs=1, batch_size=8))
        again = list(arc.train_batches(train, seed=seed, iteration=3, epochs=1, batch_size=8))
        assert all((a == b).all() for a, b in zip(batches, again)) and len(batches) == len(again)
        all_batches.append(np.concatenate(batches))
        seen = []
        for rows in batches:
            assert len(rows) == 8 and len(set(rows.tolist())) == 8
            puzzle = np.searchsorted(train.puzzle_indices, rows, side="right") - 1
            runs = [puzzle[0]] + [p for a, p in zip(puzzle, puzzle[1:]) if p != a]
            assert len(runs) == len(set(runs))  # each puzzle's examples sit together
            for p in runs[:-1]:  # whole puzzles, the last one possibly cut
                assert sorted(rows[puzzle == p]) == list(range(train.puzzle_indices[p],
                                                               train.puzzle_indices[p + 1]))
            assert (puzzle == runs[-1]).sum() <= sizes[runs[-1]]
            seen += runs
        groups = (np.searchsorted(train.group_indices, seen, side="right") - 1).tolist()
        assert len(groups) == len(set(groups))  # one copy per group per epoch
        assert len(groups) > len(train.groups) - 8  # only the dropped partial batch is missing
    assert not np.array_equal(*all_batches)
    two = np.concatenate(list(arc.train_batches(train, seed=0, epochs=2, batch_size=8)))
    assert len(two) > len(all_batches[0])


def test_test_batches_pad_with_the_blank(small):
    test = small.splits["test"]
    n = len(test.example_pair)
    batches = list(arc.test_batches(test, batch_size=n // 2 + 1))
    rows = np.concatenate(batches)
    assert len(batches) == 2 and len(rows) == 2 * (n // 2 + 1) and (rows[:n] == np.arange(n)).all()
    assert (rows[n:] == -1).all()
    x, y, ids = arc.examples(small, "test", batches[-1])
    pad = batches[-1] < 0
    assert pad.any() and (ids[pad] == 0).all() and (x[pad] == 0).all() and (y[pad] == 0).all()
    assert (ids[~pad] > 0).all() and (test.offsets == 0).all()


def test_examples_are_the_augmented_pairs(small):
    for i in range(1, len(small.names)):  # each name spells its copy's transform and colour map
        name, t, m = arc.parse_name(small.names[i])
        assert name == small.tasks[small.task_of[i]].name
        assert (t, m.tolist()) == (small.trans[i], small.maps[i].tolist())
    train = small.splits["train"]
    for p in range(len(train.puzzle_identifiers)):
        rows = np.arange(train.puzzle_indices[p], train.puzzle_indices[p + 1])
        x, y, ids = arc.examples(small, "train", rows)
        name, t, m = arc.parse_name(small.names[ids[0]])
        g = next(g for g, tk in enumerate(small.tasks) if tk.name == name)
        for row, xi, yi in zip(rows, x, y):
            a, b = train.pairs[g][train.example_pair[row]]
            off = train.offsets[row]
            assert (xi == arc.encode(arc.augment(a, t, m), off, 5)).all()
            assert (yi == arc.encode(arc.augment(b, t, m), off, 5)).all()
        assert (train.offsets[rows] == 0).all(1).any()  # the untranslated example


# ---- validation (about 0.1 s)

def write_kaggle(folder, challenges, solutions, subset="training"):
    (folder / f"arc-agi_{subset}_challenges.json").write_text(json.dumps(challenges))
    (folder / f"arc-agi_{subset}_solutions.json").write_text(json.dumps(solutions))


GOOD = {"train": [{"input": [[1, 2]], "output": [[2, 1]]}], "test": [{"input": [[3, 4]]}]}


@pytest.mark.parametrize("challenge, solution, message", [
    ({"train": [{"input": [[1, 10]], "output": [[1]]}], "test": [{"input": [[1]]}]}, [[[1]]],
     "arc-agi_training_challenges.json: task 007bbfb7 train pair 0 input: 10 at row 0, column 1"),
    ({"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": [{"input": [[1]]}]},
     [[[1]]], "arc-agi_training_challenges.json: task 007bbfb7 train pair 0 input: rows of"),
    ({"train": [{"input": [[1]], "output": [[1]]}], "test": [{"input": []}]}, [[[1]]],
     "arc-agi_training_challenges.json: task 007bbfb7 test pair 0 input: not a non-empty"),
    (GOOD, [[[0] * 31] * 2], "arc-agi_training_solutions.json: task 007bbfb7 test pair 0: "
                            "2x31 grid, larger than 30x30"),
    (GOOD, [], "arc-agi_training_solutions.json: task 007bbfb7 test pair 0: no solution"),
    ({**GOOD, "test": GOOD["test"] * 2}, [[[1]]],
     "arc-agi_training_solutions.json: task 007bbfb7 test pair 1: no solution"),
    ({"train": [{"input": [[1]]}], "test": [{"input": [[1]]}]}, [[[1]]],
     "arc-agi_training_challenges.json: task 007bbfb7 train pair 0: no 'output' grid"),
])
def test_validation_names_file_task_and_pair(tmp_path, challenge, solution, message):
    write_kaggle(tmp_path, {"007bbfb7": challenge}, {"007bbfb7": solution})
    with pytest.raises(ValueError) as e:
        arc.load_kaggle(tmp_path, "training")
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_grids_must_fit_the_canvas():
    big = task("big", [([[1] * 6], [[1]])], [([[1]], [[1]])], subset="mini")
    with pytest.raises(ValueError, match=r"^task big \(mini\): a grid side of 6 does not fit the "
                                         r"5x5 canvas$"):
        arc.build_plan([[big]], "mini", num_aug=2, canvas=5)


def test_missing_files_and_good_files(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        arc.load_kaggle(tmp_path, "evaluation")
    assert "arc-agi_evaluation_challenges.json not found" in str(e.value)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "arc-agi_evaluation_challenges.json").write_text(json.dumps({"x": GOOD}))
    with pytest.raises(FileNotFoundError, match="arc-agi_evaluation_solutions.json not found"):
        arc.load_kaggle(tmp_path, "evaluation")
    write_kaggle(tmp_path, {"x": GOOD}, {"x": [[[4, 3]]]}, "evaluation")
    (t,) = arc.load_kaggle(tmp_path, "evaluation")
    assert t.name == "x" and t.subset == "evaluation" and list(t.parts) == ["train", "test"]
    assert t.parts["test"][0][1].tolist() == [[4, 3]] and t.parts["test"][0][1].dtype == np.uint8
    mini = tmp_path / "mini"
    with pytest.raises(FileNotFoundError, match="no task JSON files in"):
        arc.load_mini_arc(mini)
    mini.mkdir()
    (mini / "a_task.json").write_text(json.dumps({"train": GOOD["train"],
                                                  "test": [{"input": [[1]], "output": [[-1]]}]}))
    with pytest.raises(ValueError, match=r"^a_task.json: task a_task test pair 0 output: -1 at"):
        arc.load_mini_arc(mini)


# ---- scoring (about 0.1 s)

def g(rows):
    return np.array(rows, np.uint8)


def test_vote_counts_then_mean_q():
    a, b, c = g([[1]]), g([[2]]), g([[3, 3]])
    ranked = arc_score.vote([a, b, b, c, a, c.copy()], np.array([0.0, 0.0, 0.0, 1.0, 0.0, 3.0]))
    # three answers with 2 votes each: mean sigmoid(q) puts c (q 1, 3) first; a and b (q 0, 0)
    # tie exactly and keep the order they came in
    assert [r[0].tolist() for r in ranked] == [[[3, 3]], [[1]], [[2]]]
    assert [r[1] for r in ranked] == [2, 2, 2]
    sig = lambda x: 1 / (1 + np.exp(-x))
    assert ranked[0][2] == pytest.approx((sig(1.0) + sig(3.0)) / 2)
    assert ranked[1][2] == ranked[2][2] == 0.5
    assert [r[0].tolist() for r in arc_score.vote([b, a, b, a], np.zeros(4))] == [[[2]], [[1]]]
    ranked = arc_score.vote([b, a, a], np.array([5.0, -5.0, -5.0]))
    assert ranked[0][0].tolist() == [[1]] and ranked[0][1] == 2  # votes before q


def test_pass_at_k_credit_rules():
    truth = {"A": [g([[1]]), g([[2]])], "B": [g([[3]])], "C": [g([[4]])]}
    ranked = {"A": [[g([[1]])], [g([[9]]), g([[2, 2]])]],  # A: input 0 right, input 1 wrong
              "B": [[g([[5]]), g([[3]])]],  # B: right at rank 2
              "C": [[]]}  # C: no answers
    scores = arc_score.pass_at_k(ranked, truth, ks=(1, 2))
    assert scores["trm"] == {1: pytest.approx(0.5 / 3), 2: pytest.approx(1.5 / 3)}
    assert scores["hrm"] == {1: 0.0, 2: pytest.approx(1 / 3)}


def test_submission_shape():
    ranked = {"A": [[g([[1]]), g([[2]]), g([[3]])], [g([[4, 4]])]], "B": [[]]}
    sub = arc_score.submission(ranked)
    assert sub == {"A": [{"attempt_1": [[1]], "attempt_2": [[2]]},
                         {"attempt_1": [[4, 4]], "attempt_2": [[4, 4]]}],
                   "B": [{"attempt_1": [[0]], "attempt_2": [[0]]}]}
    json.dumps(sub)  # plain lists of ints


def test_score_inverts_every_copy(small):
    """Predictions that are each copy's own label score 1; breaking the copies of one of the
    two test inputs of a test task costs TRM half that task and HRM all of it."""
    test = small.splits["test"]
    rows = np.arange(len(test.example_pair))
    _, labels, _ = arc.examples(small, "test", rows)
    q = np.zeros(len(rows))
    scores, sub, ranked = arc_score.score(small, labels, q, ks=(1, 2))
    assert scores == {"trm": {1: 1.0, 2: 1.0}, "hrm": {1: 1.0, 2: 1.0}}
    names = [small.tasks[gr].name for gr in test.groups]
    assert sorted(sub) == sorted(names)
    for gr in test.groups:
        t = small.tasks[gr]
        assert [s["attempt_1"] for s in sub[t.name]] == [y.tolist() for _, y in t.parts["test"]]
    two = next(gr for gr in test.groups if len(test.pairs[gr]) == 2)
    wrong = labels.copy()
    puzzle = np.searchsorted(test.puzzle_indices, rows, side="right") - 1
    hit = (small.task_of[test.puzzle_identifiers[puzzle]] == two) & (test.example_pair == 1)
    wrong[hit] = arc.encode(g([[0, 0, 0]]), canvas=5)
    scores = arc_score.score(small, wrong, q, ks=(1,))[0]
    n = len(test.groups)
    assert scores == {"trm": {1: pytest.approx(1 - 0.5 / n)}, "hrm": {1: pytest.approx(1 - 1 / n)}}
