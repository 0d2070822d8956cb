"""Puzzle data for HRM / TRM: the tasks, loading them, and the batches a training step reads.

A puzzle is a grid read row-major into S = rows * cols tokens. The model reads `inputs` and must
write `labels`; every cell is supervised and scored (givens and walls too), as in the official code.
What a family's tokens mean and how its puzzles are checked, made, transformed and drawn lives in
its own file below: puzzles/sudoku.py, puzzles/maze.py, and ARC in puzzles/arc_task.py. A task is
one entry of TASKS; docs/adding-a-task.md says what a new one needs.

tasks (TASKS)
  sudoku      Sudoku-Extreme 9x9, the papers' benchmark: 1k train puzzles drawn (seeded) from the
              official train.csv, test = all 422,786 puzzles of test.csv
  maze        Maze-Hard 30x30, the papers' benchmark: 1k train / 1k test
  sudoku4     4x4 Sudoku (2x2 boxes), generated: the quickest smoke test
  sudoku6     6x6 Sudoku (2x3 boxes), generated: small, but recursion clearly helps
  maze-small  7x7 mazes generated like Maze-Hard (puzzles/maze.py), 1k train / 1k test
  arc1, arc2, arc-mini   ARC-AGI-1, -2 and Mini-ARC, as the official TRM builder makes them

tokens: sudoku PAD 0, blank 1, digit d -> d + 1; maze PAD 0, then "# SGo" -> 1..5 (wall, open,
start, goal, path; the label draws the benchmark's canonical shortest path). PAD never occurs in
Sudoku or maze; it is kept so that the ids match the official datasets.

What a task offers, the interface train.py and lib/evaluate.py use (PuzzleSet here, ArcSet for
ARC): len(), seq_len, vocab_size, num_puzzle_ids, kind, generated, source, meta; batch(step, ...)
the training batch of a step; eval_batches(batch_size) the test examples; votes(steps), None here:
ARC votes over the augmented copies of each test input.

The benchmarks come from `data_dir` if given, else the cache under `cache_dir`, else a download
from Hugging Face ($HF_ENDPOINT, default https://huggingface.co). If that fails we fall back to our
offline generator and say so loudly: generated data is never the benchmark, and
PuzzleSet.generated / .source always say which one you have.
"""
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from puzzles import arc_task, common, csv_format, generated, maze, sudoku
from puzzles.common import download

# The tasks: every --task is one entry here (docs/adding-a-task.md). kind names the family and
# family is its module, which knows the rules (its tokens, checks, generator, augmentation and
# drawing); grid is (rows, cols), S = rows * cols tokens; vocab counts token 0 (PAD), which is
# never trained or scored (IGNORE); repo is the benchmark's Hugging Face dataset, None for a task
# that is always generated. The presets of both models are the task's entries in lib/presets.py,
# or recipe="<task>": train it with that task's presets.
# n_train / n_test: sizes of generated sets; n_train is also the size of the official Sudoku
# subsample (the 1k), while official test sets are used whole.
# needs_guess: generated Sudoku must not be solvable by singles alone (else any minimal puzzle);
# min_steps: generated mazes have a shortest path of at least that many steps (Maze-Hard: 109,
# its measured minimum; the small mazes scale it down)
TASKS = {
    "sudoku": dict(description="Sudoku-Extreme 9x9 (benchmark)", repo="sapientinc/sudoku-extreme",
                   kind="sudoku", family=sudoku, grid=(9, 9), vocab=11, n_train=1000,
                   n_test=1000, needs_guess=True),
    "maze": dict(description="Maze-Hard 30x30 (benchmark)", repo="sapientinc/maze-30x30-hard-1k",
                 kind="maze", family=maze, grid=(30, 30), vocab=6, n_train=1000, n_test=1000,
                 min_steps=109),
    "sudoku4": dict(description="4x4 Sudoku, 2x2 boxes, minimal puzzles (generated)", repo=None,
                    kind="sudoku", family=sudoku, grid=(4, 4), vocab=6, n_train=5000,
                    n_test=1000, needs_guess=False),
    "sudoku6": dict(description="6x6 Sudoku, 2x3 boxes, minimal puzzles (generated)", repo=None,
                    kind="sudoku", family=sudoku, grid=(6, 6), vocab=8, n_train=30000,
                    n_test=1000, needs_guess=False),
    "maze-small": dict(description="7x7 maze generated like Maze-Hard", repo=None,
                       kind="maze", family=maze, grid=(7, 7), vocab=6, n_train=1000,
                       n_test=1000, min_steps=16),
    **arc_task.TASKS,  # each with its own loader ("load") instead of a family
}
# PuzzleSet.kind -> the module that knows the rules, as the tasks name them
FAMILIES = {spec["kind"]: spec["family"] for spec in TASKS.values() if "family" in spec}
# data rows of the official files (the Hugging Face datasets sapientinc/sudoku-extreme and
# sapientinc/maze-30x30-hard-1k), so that a cut download is never taken for the benchmark
OFFICIAL_ROWS = {"sudoku": {"train.csv": 3_831_994, "test.csv": 422_786},
                 "maze": {"train.csv": 1000, "test.csv": 1000}}

IGNORE = 0  # labels that carry no loss and no score (official ignore_label_id): ARC's PAD canvas
# around a grid. Sudoku and maze labels never hold it: every one of their cells counts, so their
# tokens start at 1 (a family whose alphabet starts at 0 shifts it by one; tests/test_tasks.py
# checks every task's labels)


def scores(logits: torch.Tensor, labels: torch.Tensor) -> tuple:
    """Per puzzle (B,): whether every labelled cell is right, and the fraction that is."""
    valid = labels != IGNORE  # (B, S)
    right = (logits.argmax(-1) == labels) & valid  # (B, S)
    count = valid.sum(-1)  # (B,)
    return right.sum(-1) == count, right.sum(-1) / count.clamp(min=1)


@dataclass
class PuzzleSet:
    task: str
    split: str  # "train" or "test"
    inputs: torch.Tensor = field(repr=False)  # (N, S) uint8 token ids
    labels: torch.Tensor = field(repr=False)  # (N, S) uint8 token ids, every cell supervised
    vocab_size: int
    grid: tuple[int, int]  # (rows, cols), S = rows * cols
    kind: str  # "sudoku", "maze", ...: the family (FAMILIES) whose rules apply
    generated: bool  # True if made by our offline generator (never the benchmark)
    source: str  # one line of provenance
    meta: dict = field(repr=False)  # per-puzzle "rating", "clues", "steps", "walls"; seeds, rows

    num_puzzle_ids = 1  # every Sudoku and maze puzzle shares puzzle id 0 (one learned prefix)

    def __len__(self):
        return len(self.inputs)

    @property
    def seq_len(self) -> int:
        return self.inputs.shape[1]

    def batch(self, step: int, batch_size: int, seed: int, augmented: bool,
              part: slice = slice(None)):
        """(inputs, labels, puzzle ids) of slots `part` (under torchrun: this rank's) of the batch
        of optimiser step `step`: the next batch_size puzzles of the epochs' permutations, each a
        fresh random isomorph if augmented, all with puzzle id 0. A pure function of (seed, step),
        so a resumed run sees exactly the same batches."""
        B, num = batch_size, len(self)
        first = step * B
        epochs = range(first // num, (first + B - 1) // num + 1)
        idx = torch.cat([epoch_order(seed, e, num) for e in epochs])[first % num:first % num + B]
        inputs, labels = self.inputs[idx], self.labels[idx]  # (B, S) each
        # deviation: a fresh random isomorph every time a puzzle is drawn, where the official
        # dataset stores 1000 fixed augmentations per puzzle and draws one of those 1001 variants
        if augmented:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + step + 1)
            inputs, labels = augment(self.kind, self.grid, inputs, labels, gen)
        return inputs[part], labels[part], torch.zeros(B, dtype=torch.long)[part]

    def eval_batches(self, batch_size: int, limit: int = 0):
        """(rows, inputs, labels, puzzle ids) of the first `limit` puzzles (0 = all), in order."""
        num = min(limit or len(self), len(self))
        for start in range(0, num, batch_size):
            rows = torch.arange(start, min(num, start + batch_size))
            yield rows, self.inputs[rows], self.labels[rows], torch.zeros(len(rows), dtype=torch.long)

    def votes(self, steps, adaptive: bool = False):
        return None  # each puzzle is scored on its own answer


def augment(kind: str, shape: tuple[int, int], inputs: torch.Tensor, labels: torch.Tensor,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random validity-preserving transforms of a (B, S) batch, a fresh one per row; input and
    label share each one. sudoku: digit relabel, band/row and stack/column shuffles, transpose if
    boxes are square. maze: one of the 8 dihedral transforms (square grids)."""
    return FAMILIES[kind].augment(shape, inputs, labels, generator)


def epoch_order(seed: int, epoch: int, num: int) -> torch.Tensor:
    # one random permutation of the training puzzles per epoch, as the official loader draws them.
    # deviation: epochs run on without a break; the official loader drops the last partial batch
    # of every eval interval (320 of 5,000,000 samples)
    return torch.randperm(num, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def _family(puzzles):
    """The family module of a PuzzleSet or a kind string ("sudoku", "maze")."""
    kind = getattr(puzzles, "kind", puzzles)
    if kind not in FAMILIES:
        raise ValueError(f"puzzles must be a PuzzleSet or one of {', '.join(map(repr, FAMILIES))},"
                         f" got {kind!r}")
    return FAMILIES[kind]


def decode(puzzles, tokens) -> str:
    """Pretty text grid of one (S,) token row; `puzzles` is a PuzzleSet or a kind string."""
    return _family(puzzles).decode([int(v) for v in tokens])


def check(kind, shape, x, y, where):
    """Raise ValueError naming where(row) and what is wrong with the first bad puzzle of the
    (N, S) arrays x, y. Shared by the CSV loader and the generated sets; it never repairs."""
    problem = FAMILIES[kind].problem(shape, x, y)
    if problem:
        raise ValueError(f"{where(int(problem[0]))}: {problem[1]}")


def load_task(task: str, data_dir: str | None = None, cache_dir: str = "data", seed: int = 0,
              log=print, **options) -> tuple:
    """(train, test) PuzzleSets of a task in TASKS. seed: generator seed or 1k subsample seed;
    options go to a family's own loader (ARC: num_aug, augmented copies per task)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    spec = TASKS[task]
    if "load" in spec:  # a family with its own loader (ARC: puzzles/arc_task.py)
        return spec["load"](task, data_dir, cache_dir, log, **options)
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
                    download(url, folder / name, log)
        except OSError as e:  # no network, HTTP error, timeout, full disk: generate instead
            bar = "#" * 88
            log("\n".join([bar, f"# could not download {spec['repo']}: {e}",
                           f"# USING GENERATED DATA for task {task!r}. This is NOT the benchmark:",
                           "# results are NOT comparable to the paper. For the real data put",
                           f"# train.csv and test.csv into {folder}/ (or pass data_dir).", bar]))
            return _generated_task(task, seed, cache_dir, log)
    fields = dict(task=task, vocab_size=spec["vocab"], grid=spec["grid"], kind=spec["kind"],
                  generated=False)
    facts = _check_files(task, folder, official=data_dir is None)
    rows, sub, total = None, {}, facts["train.csv"][0]
    # deviation: the 1k Sudoku subset is drawn with a fixed seed (the official builder sets none)
    if task == "sudoku":
        if total < spec["n_train"]:
            raise ValueError(f"{folder / 'train.csv'} has {total} data rows, need at least "
                             f"{spec['n_train']}")
        rows = np.random.default_rng(seed).choice(total, spec["n_train"], replace=False)
        sub = {"subsample_seed": seed, "subsample_rows": rows}
    x, y, meta = csv_format.read(folder / "train.csv", FAMILIES[spec["kind"]], spec["grid"], rows)
    how = f"{len(x):,} puzzles" if rows is None else \
        f"{len(x):,} of {total:,} rows drawn with numpy default_rng({seed}).choice"
    train = PuzzleSet(split="train", inputs=x, labels=y, source=f"{origin} train.csv ({how})",
                      meta={**meta, **sub, "sha256": facts["train.csv"][1]}, **fields)
    x, y, meta = csv_format.read(folder / "test.csv", FAMILIES[spec["kind"]], spec["grid"])
    part = "" if len(x) == OFFICIAL_ROWS[task]["test.csv"] else \
        f"; NOT the whole official test set of {OFFICIAL_ROWS[task]['test.csv']:,}"
    test = PuzzleSet(split="test", inputs=x, labels=y, source=f"{origin} test.csv ({len(x):,} "
                     f"puzzles{part})", meta={**meta, "sha256": facts["test.csv"][1]}, **fields)
    for s in (train, test):  # third-party mazes may break ties between shortest paths otherwise
        if "canonical" in s.meta and not s.meta["canonical"].all():
            log(f"{folder / (s.split + '.csv')}: {(~s.meta['canonical']).sum():,} of {len(s):,} "
                f"labels are shortest paths but not the benchmark's canonical one")
    return train, test


def _check_files(task: str, folder: Path, official: bool) -> dict:
    """{name: (data rows, sha256)} of the task's CSVs; the cache or a download (official) must
    hold the whole official file, so that a cut download is never taken for the benchmark."""
    facts = {name: csv_format.rows_and_sha256(folder / name) for name in OFFICIAL_ROWS[task]}
    for name, (count, _) in facts.items():
        if official and count != OFFICIAL_ROWS[task][name]:
            raise ValueError(f"{folder / name} has {count:,} data rows, the official file "
                             f"{OFFICIAL_ROWS[task][name]:,}: it is cut short or another file; "
                             f"delete it to download it again, or give your own files with "
                             f"--data-dir")
    return facts


# ---- generated sets: made (or read from the cache) by puzzles/generated.py

def _generated_task(task, seed, cache_dir, log):
    spec = TASKS[task]
    arrays, path = generated.arrays(task, spec, FAMILIES[spec["kind"]], seed, cache_dir, log)
    train_keys = {r.tobytes() for r in arrays["train_inputs"]}
    assert not any(r.tobytes() in train_keys for r in arrays["test_inputs"]), "train/test overlap"
    what = FAMILIES[spec["kind"]].describe(spec)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    sets = []
    for split in ("train", "test"):
        cols = {k.split("_", 1)[1]: v for k, v in arrays.items() if k.startswith(split + "_")}
        x, y = cols.pop("inputs"), cols.pop("labels")
        check(spec["kind"], spec["grid"], x, y, lambda i, s=split: f"{path} ({s}), row {i + 1}")
        sets.append(PuzzleSet(
            task=task, split=split, inputs=torch.from_numpy(x), labels=torch.from_numpy(y),
            vocab_size=spec["vocab"], grid=spec["grid"], kind=spec["kind"], generated=True,
            source=f"GENERATED offline (seed {seed}, {what}, {len(x):,} puzzles) - "
                   "not the benchmark",
            meta={**cols, **FAMILIES[spec["kind"]].stats(x, y), "seed": seed, "sha256": sha}))
    return tuple(sets)


# ---- pictures: show() draws one grid on a matplotlib Axes, for notebooks

SHOW_COLOURS = common.SHOW_COLOURS


def show(puzzles, tokens, ax=None, *, inputs=None, label=None, previous=None, grid=None,
         fontsize=None):
    """Draw one (S,) token row on a matplotlib Axes (default: the current one) and return it.
    `puzzles` is a PuzzleSet or a kind string, as in decode(); inputs is the question (a Sudoku's
    givens are drawn bold on grey), label the right answer (cells that agree are green, any that
    disagree red), previous e.g. the answer one supervision step earlier (changed cells get an
    orange frame). grid is (rows, cols), by default the PuzzleSet's, else a square. The families'
    looks() say what each cell looks like (colours: SHOW_COLOURS); fontsize defaults to what fits
    the cells. Each artist's gid names its cell i = row * cols + col ("cell i", "text i", "dot i",
    "frame i")."""
    family = _family(puzzles)
    t, x, y, before = common.rows(tokens, inputs=inputs, label=label, previous=previous)
    shape = common.grid_shape(len(t), grid or getattr(puzzles, "grid", None))
    cells, box = family.looks(t, x, y)
    return common.draw(ax, cells, shape, box, None if before is None else before != t, fontsize)
