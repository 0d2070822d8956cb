"""ARC-AGI as the official TRM builder makes it (dataset/build_arc_dataset.py of
SamsungSAILMontreal/TinyRecursiveModels) and its sampler (puzzle_dataset.py there; the evaluator
is in arc_score.py), without writing the 7 GB of example arrays: a Plan holds every
puzzle's name, task, dihedral transform and colour map, and the (k, S) arrays of any examples are
made on the fly.

Data hierarchy: a group is one task; its puzzles are the original and up to num_aug augmented
copies, each with its own puzzle id (its own learned embedding); a puzzle's examples are the
task's pairs, mapped by that copy's augmentation. Splits: every task's demos ("train" pairs) go to
the train split, and so do the test pairs of every subset except the test set, whose test pairs
form the test split (ARC-1: evaluation; ARC-2: evaluation2; Mini-ARC: all of it).

Tokens: PAD 0, EOS 1, colour c -> c + 2 (vocab 12). A grid sits in a canvas x canvas square
(30 x 30, seq_len 900; Mini-ARC's 5 x 5 grids use canvas 6), row-major, with an EOS row below it
and an EOS column right of it; the corner stays PAD. A 2 x 3 grid at offset (0, 0):

    c c c E .        c = colour + 2, E = EOS, . = PAD
    c c c E .
    E E E . .

PAD labels carry no loss (the official ignore_label_id 0); EOS labels are supervised, so the
model predicts the size of its answer. Train examples are shifted by an offset drawn at build time
(input and output alike), except one example per puzzle; test examples stay at (0, 0).

Identifiers, augmentations and offsets replay the official build draw for draw: np.random.seed(42),
each subset's task order shuffled, then per task aug() calls until 1 + num_aug distinct copies or
RETRIES * num_aug tries, then the offsets. puzzles/arc_replay.py decodes the raw words of the
same legacy MT19937 stream in bulk and deduplicates with the task's own symmetries instead of
hashing every candidate, which gives the same copies: the whole ARC-1 plan takes about 6 s and
0.3 GB on one core, where the builder's lists pass 7 GB.
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from puzzles.arc_replay import (DIHEDRAL_INVERSE, IDENTITY, LegacyStream, augmentations, dihedral,
                                draw_offsets)

PAD, EOS = 0, 1  # colour c is token c + 2
VOCAB = 12
CANVAS = 30  # the official canvas side (ARCMaxGridSize): seq_len 900
MAX_SIDE = 30  # the largest ARC grid
SEED, NUM_AUG, RETRIES = 42, 1000, 5  # builder defaults: up to RETRIES * NUM_AUG aug() tries
SEP = "|||"  # name of a copy: "{task}|||t{k}|||{colour map as 10 digits}"
BLANK = "<blank>"  # puzzle id 0: padding rows of an eval batch
VERSIONS = {  # (subsets in the builder's command-line order, the test set), as its README runs it
    "arc1": (("training", "evaluation", "concept"), "evaluation"),
    "arc2": (("training2", "evaluation2", "concept"), "evaluation2"),
}


@dataclass
class Task:
    name: str  # the task id: the JSON key (Kaggle files) or the file stem (Mini-ARC)
    subset: str  # "training", "evaluation", ..., "mini-arc"
    # "train" (demos) and "test" -> list of (input, output) pairs of (h, w) uint8 grids, in the
    # file's key order: the builder's example order (ARC-1's training and evaluation files list
    # "test" first, so those tasks' test pairs come before their demos in the train split)
    parts: dict

    def pairs(self) -> list:
        return [p for pairs in self.parts.values() for p in pairs]


# ---- loading and validation: every error names the file, the task and the pair

def _grid(value, where: str) -> np.ndarray:
    """A JSON grid as an (h, w) uint8 array; ValueError(where: what is wrong)."""
    if not isinstance(value, list) or not value or not all(isinstance(r, list) for r in value):
        raise ValueError(f"{where}: not a non-empty list of rows")
    widths = sorted({len(r) for r in value})
    if len(widths) > 1 or widths[0] == 0:
        raise ValueError(f"{where}: rows of lengths {widths} (a grid is a non-empty rectangle)")
    if len(value) > MAX_SIDE or widths[0] > MAX_SIDE:
        raise ValueError(f"{where}: {len(value)}x{widths[0]} grid, larger than 30x30")
    for r, row in enumerate(value):
        for c, v in enumerate(row):
            if type(v) is not int or not 0 <= v <= 9:
                raise ValueError(f"{where}: {v!r} at row {r}, column {c} is not a colour 0..9")
    return np.array(value, np.uint8)


def _pairs(items, where: str, need_output: bool = True) -> list:
    """[(input, output)] of a JSON list of pairs (output None when not needed: Kaggle test
    inputs, whose outputs are in the solutions file)."""
    if not isinstance(items, list) or not items:
        raise ValueError(f"{where}: no pairs (a task needs at least one demo and one test)")
    out = []
    for i, item in enumerate(items):
        at = f"{where} pair {i}"
        if not isinstance(item, dict) or "input" not in item:
            raise ValueError(f"{at}: not an object with an 'input' grid")
        if need_output and "output" not in item:
            raise ValueError(f"{at}: no 'output' grid")
        out.append((_grid(item["input"], f"{at} input"),
                     _grid(item["output"], f"{at} output") if need_output else None))
    return out


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: put {what} in {path.parent}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({e}); download it again") from None


def load_kaggle(folder, subset: str, prefix: str = "arc-agi") -> list:
    """The tasks of {prefix}_{subset}_challenges.json with their test outputs from
    _solutions.json, in file order. ValueError names file, task and pair of a bad grid or a
    missing solution; FileNotFoundError says which file is missing and where it goes."""
    folder = Path(folder)
    what = (f"the Kaggle-format ARC files ({prefix}_<subset>_challenges.json and "
            f"_solutions.json, TRM's kaggle/combined, see {folder.name}/README.md)")
    challenges = _read_json(folder / f"{prefix}_{subset}_challenges.json", what)
    solutions = _read_json(folder / f"{prefix}_{subset}_solutions.json", what)
    cname, sname = f"{prefix}_{subset}_challenges.json", f"{prefix}_{subset}_solutions.json"
    tasks = []
    for name, task in challenges.items():
        if not isinstance(task, dict) or set(task) != {"train", "test"}:
            raise ValueError(f"{cname}: task {name}: needs exactly the keys 'train' and 'test'")
        parts = {}
        for part in task:  # the file's key order is the builder's example order
            parts[part] = _pairs(task[part], f"{cname}: task {name} {part}", part == "train")
        sols = solutions.get(name)
        if not isinstance(sols, list):
            raise ValueError(f"{sname}: task {name} test pair 0: no solution")
        for i, (inp, _) in enumerate(parts["test"]):
            if i >= len(sols):
                raise ValueError(f"{sname}: task {name} test pair {i}: no solution")
            parts["test"][i] = (inp, _grid(sols[i], f"{sname}: task {name} test pair {i}"))
        if len(sols) > len(parts["test"]):
            raise ValueError(f"{sname}: task {name} test pair {len(parts['test'])}: a solution "
                             f"without a test input ({len(sols)} for {len(parts['test'])})")
        tasks.append(Task(name, subset, parts))
    return tasks


def load_mini_arc(folder, subset: str = "mini-arc") -> list:
    """Mini-ARC (KSB21ST/MINI-ARC): one JSON per task, {"train": [...], "test": [...]} of
    {"input", "output"} pairs; the task name is the file stem; files in sorted name order."""
    folder = Path(folder)
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no task JSON files in {folder}: put Mini-ARC's data/MiniARC/"
                                f"*.json there")
    tasks = []
    for path in files:
        task = _read_json(path, "a Mini-ARC task")
        if not isinstance(task, dict) or set(task) != {"train", "test"}:
            raise ValueError(f"{path.name}: task {path.stem}: needs the keys 'train' and 'test'")
        parts = {part: _pairs(task[part], f"{path.name}: task {path.stem} {part}")
                 for part in task}
        tasks.append(Task(path.stem, subset, parts))
    return tasks


# ---- tokens: grid -> (canvas * canvas,) row, and the evaluator's crop back

def encode(grid: np.ndarray, offset=(0, 0), canvas: int = CANVAS) -> np.ndarray:
    """(canvas * canvas,) uint8 tokens of an (h, w) grid whose top-left cell is at offset, with
    the EOS row below and EOS column right of it where they fall inside the canvas."""
    r, c = offset
    h, w = grid.shape
    out = np.zeros((canvas, canvas), np.uint8)  # PAD
    out[r:r + h, c:c + w] = grid + 2
    if r + h < canvas:
        out[r + h, c:c + w] = EOS
    if c + w < canvas:
        out[r:r + h, c + w] = EOS
    return out.ravel()


def crop(tokens: np.ndarray, canvas: int = CANVAS, offset=(0, 0)) -> np.ndarray:
    """The (h, w) grid of a predicted (canvas * canvas,) token row, read from offset (the
    evaluator reads (0, 0)): the largest-area rectangle at the offset whose cells are all
    colours, scanning row by row as the official _crop does. A well-formed answer ends at its
    EOS border; a malformed one keeps its largest top-left block of colours, and one without a
    colour at the offset is the empty (0, 0) grid, which still takes a vote but is never right."""
    g = np.asarray(tokens).reshape(canvas, canvas)[offset[0]:, offset[1]:]
    colour = (g >= 2) & (g <= 11)
    run = np.where(colour.all(1), colour.shape[1], colour.argmin(1))  # colours from column 0
    width = np.minimum.accumulate(run)  # (rows,): widest rectangle h = 1.. rows tall
    area = width * np.arange(1, len(width) + 1)
    h = int(area.argmax())  # the first (shortest) of equal areas, as the official scan
    if area[h] == 0:
        return np.zeros((0, 0), np.uint8)
    return (g[:h + 1, :width[h]] - 2).astype(np.uint8)


# ---- the augmentations: 8 dihedral transforms (arc_replay.dihedral) x colour maps, black fixed

def augment(grid: np.ndarray, t: int, mapping: np.ndarray) -> np.ndarray:
    """A copy's grid: colours mapped first (mapping[c], mapping[0] = 0), then transform t."""
    return dihedral(mapping[grid], t)


def invert(grid: np.ndarray, t: int, mapping: np.ndarray) -> np.ndarray:
    """The original task's grid of a copy's grid: undo transform t, then the colour map."""
    return np.argsort(mapping).astype(np.uint8)[dihedral(grid, DIHEDRAL_INVERSE[t])]


def parse_name(name: str) -> tuple:
    """(task, t, mapping (10,)) of a puzzle name; the original copy has t 0 and the identity."""
    if SEP not in name:
        return name, 0, IDENTITY.copy()
    task, t, digits = name.split(SEP)
    return task, int(t[1:]), np.frombuffer(digits.encode(), np.uint8) - ord("0")


# ---- the plan: what the builder's arrays would hold, without the grids

@dataclass
class Split:
    name: str  # "train" or "test"
    pairs: list  # per group (task index): the task's pairs in this split, [] if none
    groups: np.ndarray  # (G,) task index of each group of this split, in build order
    puzzle_identifiers: np.ndarray  # (P,) int32 puzzle id of each puzzle row
    puzzle_indices: np.ndarray  # (P + 1,) int64: puzzle row p has examples [pi[p], pi[p + 1])
    group_indices: np.ndarray  # (G + 1,) int64: group g has puzzle rows [gi[g], gi[g + 1])
    example_pair: np.ndarray  # (E,) int16 which of its task's pairs in this split example e is
    offsets: np.ndarray  # (E, 2) uint8 top-left (row, column) of example e in the canvas

    @property
    def mean_puzzle_examples(self) -> float:
        return len(self.example_pair) / len(self.puzzle_identifiers)


@dataclass
class Plan:
    names: list  # puzzle id -> name; id 0 is "<blank>" (the official identifiers.json)
    tasks: list  # group -> Task, in build order (subsets in order, each one shuffled)
    task_of: np.ndarray  # (I,) int32 group of each puzzle id (-1 for the blank)
    trans: np.ndarray  # (I,) uint8 dihedral transform of each puzzle id
    maps: np.ndarray  # (I, 10) uint8 colour map of each puzzle id
    copies: np.ndarray  # (groups,) puzzles per group: 1 + its augmented copies
    splits: dict  # "train", "test" -> Split
    canvas: int  # side of the token canvas: S = canvas * canvas

    def sha256_names(self) -> str:
        """sha256 of all names in id order, joined by newlines (the golden file's check)."""
        return hashlib.sha256("\n".join(self.names).encode()).hexdigest()


def _split(name, copies, first_id, pairs) -> Split:
    """The CSR indices of a split whose group g (a task index) has copies[g] puzzles, ids
    first_id[g].., each with the examples pairs[g]; tasks without pairs here are left out."""
    groups = np.array([g for g in range(len(pairs)) if pairs[g]], np.int64)
    c = copies[groups]  # (G,) puzzles per group
    ids = np.repeat(first_id[groups] - (np.cumsum(c) - c), c) + np.arange(c.sum())  # (P,)
    sizes = np.repeat([len(pairs[g]) for g in groups], c).astype(np.int64)  # (P,) examples
    starts = np.cumsum(sizes) - sizes
    return Split(name, pairs, groups.astype(np.int32), ids.astype(np.int32),
                 puzzle_indices=np.concatenate([[0], np.cumsum(sizes)]),
                 group_indices=np.concatenate([[0], np.cumsum(c)]),
                 example_pair=(np.arange(sizes.sum()) - np.repeat(starts, sizes)).astype(np.int16),
                 offsets=np.zeros((sizes.sum(), 2), np.uint8))


def build_plan(subsets: list, test_set: str, seed: int = SEED, num_aug: int = NUM_AUG,
               canvas: int = CANVAS, offsets: bool = True) -> Plan:
    """The official build of the given subsets (lists of Task, in the builder's command-line
    order), test_set naming the subset whose test pairs form the test split. offsets=False
    leaves every example at (0, 0) and skips their draws (identifiers, counts and the test
    split do not depend on them)."""
    for task in (task for subset in subsets for task in subset):
        side = max(max(g.shape) for pair in task.pairs() for g in pair)
        if side > canvas:
            raise ValueError(f"task {task.name} ({task.subset}): a grid side of {side} does not "
                             f"fit the {canvas}x{canvas} canvas")
    rng = LegacyStream(seed)
    tasks, trans, maps = [], [], []
    for subset in subsets:
        order = list(subset)
        rng.shuffle(order)
        for task in order:
            t, m = augmentations(task, rng, num_aug, RETRIES)
            tasks.append(task)
            trans.append(t)
            maps.append(m)
    copies = np.array([len(t) for t in trans])
    first_id = np.concatenate([[1], 1 + np.cumsum(copies)[:-1]])  # id 0 is the blank
    trans = np.concatenate([[0]] + trans).astype(np.uint8)  # (I,)
    maps = np.concatenate([IDENTITY[None]] + maps)  # (I, 10)
    task_of = np.repeat(np.arange(-1, len(tasks)), np.concatenate([[1], copies])).astype(np.int32)
    digits = (maps + ord("0")).tobytes().decode()  # 10 digits per id
    original = np.zeros(len(trans), bool)
    original[first_id] = True
    names = [BLANK] + [
        tasks[g].name if first else f"{tasks[g].name}{SEP}t{t}{SEP}{digits[10 * i:10 * i + 10]}"
        for i, g, t, first in zip(range(1, len(trans)), task_of[1:].tolist(), trans[1:].tolist(),
                                  original[1:].tolist())]
    in_test = [task.subset == test_set for task in tasks]
    train = [[p for part, pairs in task.parts.items() for p in pairs
              if part == "train" or not test] for task, test in zip(tasks, in_test)]
    test = [task.parts["test"] if test else [] for task, test in zip(tasks, in_test)]
    plan = Plan(names, tasks, task_of, trans, maps, copies, {}, canvas)
    plan.splits = {name: _split(name, copies, first_id, pairs)
                   for name, pairs in (("train", train), ("test", test))}
    if offsets:  # only the train split is shifted
        draw_offsets(rng, plan, plan.splits["train"])
    return plan


def build_arc(folder, version: str = "arc1", **kw) -> Plan:
    """The official arc1concept-aug-1000 / arc2concept-aug-1000 build (VERSIONS) from a folder of
    the Kaggle-format files; kw as build_plan (seed, num_aug, canvas, offsets)."""
    subsets, test_set = VERSIONS[version]
    return build_plan([load_kaggle(folder, s) for s in subsets], test_set, **kw)


def build_mini_arc(folder, num_aug: int = NUM_AUG, canvas: int = 6, **kw) -> Plan:
    """Mini-ARC, built like one ARC test subset: demos train, test pairs test. canvas 6 = the 5x5
    grid plus its EOS border; a shifted example (offset 1) then has no EOS row or column, as a
    30 x 30 ARC grid has none."""
    return build_plan([load_mini_arc(folder)], "mini-arc", num_aug=num_aug, canvas=canvas, **kw)


# ---- examples on the fly

def examples(plan: Plan, split: str, rows) -> tuple:
    """(inputs (B, S), labels (B, S) uint8 tokens, puzzle ids (B,) int32) of example rows of a
    split; a row of -1 is padding: PAD tokens and the blank id 0."""
    s, rows = plan.splits[split], np.asarray(rows, np.int64)
    S = plan.canvas * plan.canvas
    inputs, labels = np.zeros((len(rows), S), np.uint8), np.zeros((len(rows), S), np.uint8)
    puzzle = np.searchsorted(s.puzzle_indices, rows, side="right") - 1  # (B,) puzzle rows
    ids = np.where(rows >= 0, s.puzzle_identifiers[puzzle], 0).astype(np.int32)  # (B,)
    for b in np.flatnonzero(rows >= 0):
        pid, e = ids[b], rows[b]
        t, m = plan.trans[pid], plan.maps[pid]
        a, y = s.pairs[plan.task_of[pid]][s.example_pair[e]]
        inputs[b] = encode(augment(a, t, m), s.offsets[e], plan.canvas)
        labels[b] = encode(augment(y, t, m), s.offsets[e], plan.canvas)
    return inputs, labels, ids


# ---- the sampler: the official epoch (puzzle_dataset.py)

def planned_steps(split: Split, epochs: int, batch_size: int = 768) -> int:
    """Optimiser steps the official schedule plans: int(epochs * groups * mean examples per
    puzzle / batch), in the official order of operations."""
    return int(epochs * len(split.groups) * split.mean_puzzle_examples / batch_size)


def train_batches(split: Split, seed: int, iteration: int = 0, epochs: int = 1,
                  batch_size: int = 768):
    """Yield the (B,) example rows of each batch of one official iteration: `epochs` random
    orders of the groups back to back; per group visit one random copy, all its examples; a
    batch is filled to exactly batch_size, so its last puzzle is cut to a random subset of its
    examples and the rest of that puzzle is dropped; the last, partial batch is dropped. The
    official loader runs eval_interval epochs per iteration with Philox(seed + iteration), as
    here (the draws themselves are not checked against it). Deterministic in (seed, iteration)."""
    rng = np.random.Generator(np.random.Philox(seed + iteration))
    order = np.concatenate([rng.permutation(len(split.groups)) for _ in range(epochs)])
    puzzle = rng.integers(split.group_indices[order], split.group_indices[order + 1])  # (V,)
    start = split.puzzle_indices[puzzle]
    size = split.puzzle_indices[puzzle + 1] - start
    ends = np.concatenate([[0], np.cumsum(size)])  # examples before each visit
    k = 0
    while (stop := int(np.searchsorted(ends, ends[k] + batch_size))) < len(ends):
        take = size[k:stop].copy()
        take[-1] = batch_size - (ends[stop - 1] - ends[k])  # the cut puzzle keeps what fits
        within = np.arange(batch_size) - np.repeat(np.cumsum(take) - take, take)  # (B,)
        rows = np.repeat(start[k:stop], take) + within  # (B,) whole puzzles in example order
        cut = rng.choice(size[stop - 1], take[-1], replace=False)  # a random subset of the last
        rows[batch_size - take[-1]:] = start[stop - 1] + cut
        yield rows
        k = stop


def test_batches(split: Split, batch_size: int = 768):
    """Yield the (B,) example rows of the split in order, batch_size at a time, the last batch
    padded with -1 (examples() makes those PAD rows with the blank id 0), as the official
    evaluation loader."""
    n = len(split.example_pair)
    for first in range(0, n, batch_size):
        rows = np.arange(first, first + batch_size)
        yield np.where(rows < n, rows, -1)
