"""Puzzle data for HRM / TRM: the tasks, loading them, batches, and one entry point per puzzle
family for validation, augmentation and pictures.

A puzzle is a grid read row-major into S = rows * cols tokens. The model reads `inputs` and must
write `labels`; every cell is supervised and scored (givens and walls too), as in the official code;
in ARC the PAD cells around a grid are not. What a family's tokens mean, how its puzzles are
checked, made, transformed and drawn lives in its own file: puzzles/sudoku.py, puzzles/maze.py
(puzzles/common.py holds what they share), puzzles/arc.py.

tasks (see TASKS)
  sudoku      Sudoku-Extreme 9x9, the papers' benchmark: 1k train puzzles drawn (seeded) from the
              official train.csv, test = all 422,786 puzzles of test.csv
  maze        Maze-Hard 30x30, the papers' benchmark: 1k train / 1k test
  sudoku4     4x4 Sudoku (2x2 boxes), generated: the quickest smoke test
  sudoku6     6x6 Sudoku (2x3 boxes), generated: small, but recursion clearly helps
  maze-small  7x7 mazes, generated like Maze-Hard (puzzles/maze.py: independent walls given a
              long path, the canonical answer), 1k train / 1k test
  arc1, arc2  ARC-AGI-1 / -2 as the official TRM builder makes them (puzzles/arc.py): every task's
              demos train, the evaluation tasks' test pairs test, 1000 augmented copies per task,
              each its own puzzle id; examples made on the fly (ArcSet), no generator
  arc-mini    Mini-ARC, 149 tasks on 5x5 grids (canvas 6), built the same way

tokens (PAD 0 occurs only in ARC, around a grid on its canvas, and carries no loss; it is kept
elsewhere so the ids match the official datasets)
  sudoku  PAD 0, blank 1, digit d -> d + 1
  maze    PAD 0, then "# SGo" -> 1..5: wall, open, start, goal, path. The label is the input with
          a shortest path from S to G drawn as 'o': the benchmark's canonical one of the many
          (puzzles/maze.py), in Maze-Hard and in our generated mazes alike.
  arc     PAD 0, EOS 1 (the border below and right of a grid), colour c -> c + 2

pictures
  decode(puzzles, tokens) writes one grid as text; show(puzzles, tokens, ax) draws it on a
  matplotlib Axes, with givens, right and wrong cells and the cells changed since a previous answer.

The benchmarks come from `data_dir` if given, else the cache under `cache_dir`, else a download
from Hugging Face ($HF_ENDPOINT, default https://huggingface.co). If that fails we fall back to our
offline generator and say so loudly: generated data is never the benchmark, and
PuzzleSet.generated / .source always say which one you have. ARC comes from GitHub at a pinned
commit ($ARC_ENDPOINT, default https://github.com); without it the error says where the files go.
"""
import hashlib
import os
import random
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from puzzles import arc, common, csv_format, maze, sudoku

FAMILIES = {"sudoku": sudoku, "maze": maze}  # PuzzleSet.kind -> the module that knows the rules
# where ARC comes from when neither --data-dir nor the cache has it: files pinned to a commit
# (spec arc.md §1.1), through $ARC_ENDPOINT (default https://github.com)
ARC_REPO = ("SamsungSAILMontreal/TinyRecursiveModels", "e7b68717f0a6c4cbb4ce6fbef787b14f42083bd9")
MINI_ARC_REPO = ("KSB21ST/MINI-ARC", "792d082c")

# n_train / n_test: sizes of generated sets; n_train is also the size of the official Sudoku
# subsample (the 1k), while official test sets are used whole.
# needs_guess: generated Sudoku must not be solvable by singles alone (else any minimal puzzle);
# min_steps: generated mazes have a shortest path of at least that many steps (Maze-Hard: 109,
# its measured minimum; the small mazes scale it down)
TASKS = {
    "sudoku": dict(description="Sudoku-Extreme 9x9 (benchmark)", repo="sapientinc/sudoku-extreme",
                   kind="sudoku", grid=(9, 9), vocab=11, n_train=1000, n_test=1000,
                   needs_guess=True),
    "maze": dict(description="Maze-Hard 30x30 (benchmark)", repo="sapientinc/maze-30x30-hard-1k",
                 kind="maze", grid=(30, 30), vocab=6, n_train=1000, n_test=1000, min_steps=109),
    "sudoku4": dict(description="4x4 Sudoku, 2x2 boxes, minimal puzzles (generated)", repo=None,
                    kind="sudoku", grid=(4, 4), vocab=6, n_train=5000, n_test=1000,
                    needs_guess=False),
    "sudoku6": dict(description="6x6 Sudoku, 2x3 boxes, minimal puzzles (generated)", repo=None,
                    kind="sudoku", grid=(6, 6), vocab=8, n_train=30000, n_test=1000,
                    needs_guess=False),
    "maze-small": dict(description="7x7 maze generated like Maze-Hard", repo=None,
                       kind="maze", grid=(7, 7), vocab=6, n_train=1000, n_test=1000,
                       min_steps=16),
    # ARC: the official build of the Kaggle-format files (puzzles/arc.py), examples on the fly
    "arc1": dict(description="ARC-AGI-1: training + evaluation + ConceptARC, test = evaluation "
                 "(benchmark)", repo=ARC_REPO, kind="arc", grid=(30, 30), vocab=arc.VOCAB),
    "arc2": dict(description="ARC-AGI-2: training2 + evaluation2 + ConceptARC, test = "
                 "evaluation2 (benchmark)", repo=ARC_REPO, kind="arc", grid=(30, 30),
                 vocab=arc.VOCAB),
    # Mini-ARC's 5x5 grids in a 6x6 canvas (the grid and its EOS border): seq_len 36
    "arc-mini": dict(description="Mini-ARC, 149 tasks on 5x5 grids: demos train, test pairs "
                     "test", repo=MINI_ARC_REPO, kind="arc", grid=(6, 6), vocab=arc.VOCAB),
}
# data rows of the official files (spec data.md), so that a cut download is never the benchmark
OFFICIAL_ROWS = {"sudoku": {"train.csv": 3_831_994, "test.csv": 422_786},
                 "maze": {"train.csv": 1000, "test.csv": 1000}}


@dataclass
class PuzzleSet:
    task: str
    split: str  # "train" or "test"
    inputs: torch.Tensor = field(repr=False)  # (N, S) uint8 token ids
    labels: torch.Tensor = field(repr=False)  # (N, S) uint8 token ids, every cell supervised
    vocab_size: int
    grid: tuple[int, int]  # (rows, cols), S = rows * cols
    kind: str  # "sudoku" or "maze": the family (FAMILIES) whose rules apply
    generated: bool  # True if made by our offline generator (never the benchmark)
    source: str  # one line of provenance
    meta: dict = field(repr=False)  # per-puzzle "rating", "clues", "steps", "walls"; seeds, rows

    num_puzzle_ids = 1  # every Sudoku and maze puzzle shares puzzle id 0 (one learned prefix)

    def __len__(self):
        return len(self.inputs)

    @property
    def seq_len(self) -> int:
        return self.inputs.shape[1]


@dataclass
class ArcSet:
    """One split of an ARC task. Its examples are made on the fly from the build plan (arc.Plan,
    shared by the train and test split) instead of being stored: the official arrays take 7 GB.
    Every augmented copy of a task is its own puzzle, with its own id and embedding row."""
    task: str
    split: str  # "train" or "test"
    plan: arc.Plan = field(repr=False)
    source: str  # one line of provenance
    meta: dict = field(repr=False)  # "sha256" of the files read, "num_aug"
    stream: dict = field(default_factory=dict, repr=False)  # where arc_batch's sampler is
    vocab_size: int = arc.VOCAB
    kind: str = "arc"
    generated: bool = False  # ARC has no generator

    def __len__(self):  # examples, each one (input, output) pair of one augmented copy
        return len(self.plan.splits[self.split].example_pair)

    @property
    def grid(self) -> tuple[int, int]:
        return self.plan.canvas, self.plan.canvas

    @property
    def seq_len(self) -> int:
        return self.plan.canvas ** 2

    @property
    def num_puzzle_ids(self) -> int:  # the blank id 0 included
        return len(self.plan.names)


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


def augment(kind: str, shape: tuple[int, int], inputs: torch.Tensor, labels: torch.Tensor,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random validity-preserving transforms of a (B, S) batch, a fresh one per row; input and
    label share each one. sudoku: digit relabel, band/row and stack/column shuffles, transpose if
    boxes are square. maze: one of the 8 dihedral transforms (square grids)."""
    return FAMILIES[kind].augment(shape, inputs, labels, generator)


# ---- batches: a pure function of (seed, step), so a resumed run sees exactly the same batches

def epoch_order(seed: int, epoch: int, num: int) -> torch.Tensor:
    # one random permutation of the training puzzles per epoch, as the official loader draws them.
    # deviation: epochs run on without a break; the official loader drops the last partial batch
    # of every eval interval (320 of 5,000,000 samples)
    return torch.randperm(num, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def get_batch(puzzles, step: int, batch_size: int, seed: int, augmented: bool,
              part: slice = slice(None)):
    """(inputs, labels, puzzle ids) of slots `part` (under torchrun: this rank's) of the batch of
    optimiser step `step`. Sudoku, maze: the next batch_size puzzles of the epochs' permutations,
    each a fresh random isomorph if augmented, all with puzzle id 0. ARC: the official sampler
    (arc_batch), whose examples are made for `part` only."""
    if puzzles.kind == "arc":
        return arc_batch(puzzles, step, batch_size, seed, part)
    B, num = batch_size, len(puzzles)
    first = step * B
    epochs = range(first // num, (first + B - 1) // num + 1)
    orders = [epoch_order(seed, e, num) for e in epochs]
    idx = torch.cat(orders)[first % num:first % num + B]
    inputs, labels = puzzles.inputs[idx], puzzles.labels[idx]
    # deviation: a fresh random isomorph every time a puzzle is drawn, where the official dataset
    # stores 1000 fixed augmentations per puzzle and draws one of those 1001 variants
    if augmented:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step + 1)
        inputs, labels = augment(puzzles.kind, puzzles.grid, inputs, labels, gen)
    return inputs[part], labels[part], torch.zeros(B, dtype=torch.long)[part]


# deviation: a sampler iteration is always 10,000 epochs, the ARC recipe's eval_interval; the
# official loader's follows eval_interval (and drops the last partial batch of each)
ARC_EPOCHS_PER_ITERATION = 10_000


def arc_batch(puzzles: ArcSet, step: int, batch_size: int, seed: int, part=slice(None)):
    """ARC's batch of step `step`: the official sampler (arc.train_batches: per epoch every task
    once, in random order, one random augmented copy each, all its examples), iterations of
    10,000 epochs back to back. The stream is read in order; a step out of order (a resumed
    run) replays it from the start, so that batches are a function of (seed, step) as above."""
    stream, split = puzzles.stream, puzzles.plan.splits["train"]
    if stream.get("key") != (seed, batch_size) or step < stream["next"]:
        stream.update(key=(seed, batch_size), iteration=-1, next=0, batches=iter(()))
    while True:
        for rows in stream["batches"]:
            stream["next"] += 1
            if stream["next"] == step + 1:
                x, y, ids = arc.examples(puzzles.plan, "train", rows[part])
                return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(ids).long()
        stream["iteration"] += 1
        stream["batches"] = arc.train_batches(split, seed, stream["iteration"],
                                              ARC_EPOCHS_PER_ITERATION, batch_size)


def download(url, dest, log):
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
              log=print, num_aug: int | None = None) -> tuple:
    """(train, test) PuzzleSets of a task in TASKS (ArcSets for ARC). seed: generator seed or 1k
    subsample seed; num_aug: ARC's augmented copies per task (None: the official 1000)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    spec = TASKS[task]
    if spec["kind"] == "arc":
        return _arc_task(task, data_dir, cache_dir, arc.NUM_AUG if num_aug is None else num_aug,
                         log)
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


# ---- ARC: the Kaggle-format files (or Mini-ARC's task files), built as the official builder

def _arc_files(task: str) -> list:
    if task == "arc-mini":
        return []  # one JSON per task: whatever the folder holds
    return [f"arc-agi_{subset}_{part}.json" for subset in arc.VERSIONS[task][0]
            for part in ("challenges", "solutions")]


def _arc_download(task: str, folder: Path, log):
    """The task's files from GitHub at the pinned commit: the Kaggle files one by one, Mini-ARC
    as the repository's zip archive, of which data/MiniARC/*.json is kept."""
    repo, commit = TASKS[task]["repo"]
    endpoint = os.environ.get("ARC_ENDPOINT", "https://github.com")
    if task != "arc-mini":
        for name in _arc_files(task):
            if not (folder / name).exists():
                download(f"{endpoint}/{repo}/raw/{commit}/kaggle/combined/{name}", folder / name,
                         log)
        return
    archive = folder.with_name("mini-arc.zip")
    download(f"{endpoint}/{repo}/archive/{commit}.zip", archive, log)
    part = folder.with_name(folder.name + ".part")
    part.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            if "/data/MiniARC/" in name and name.endswith(".json"):
                (part / Path(name).name).write_bytes(z.read(name))
    os.replace(part, folder)
    archive.unlink()


def _arc_task(task: str, data_dir, cache_dir, num_aug: int, log) -> tuple:
    """(train, test) ArcSets from data_dir, else the cache, else a download; no generator."""
    repo, commit = TASKS[task]["repo"]
    where = "data/MiniARC/*.json of " + repo if task == "arc-mini" else \
        f"{', '.join(_arc_files(task))} (kaggle/combined of {repo})"
    if data_dir is not None:
        folder, origin = Path(data_dir), f"files: {data_dir}"
    else:
        folder = Path(cache_dir) / ("mini-arc" if task == "arc-mini" else "arc-agi")
        origin = f"official: {repo}@{commit[:8]}"
        if not folder.exists() or not all((folder / n).exists() for n in _arc_files(task)):
            try:
                _arc_download(task, folder, log)
            except (OSError, zipfile.BadZipFile) as e:
                raise FileNotFoundError(
                    f"{task}: the data is not in {folder}/ and downloading it failed ({e}); "
                    f"put {where} into {folder}/, or give their folder with --data-dir "
                    f"(ARC has no offline generator)") from None
    t0 = time.time()
    if task == "arc-mini":
        plan = arc.build_mini_arc(folder, num_aug=num_aug, canvas=TASKS[task]["grid"][0])
        files = sorted(folder.glob("*.json"))
    else:
        plan = arc.build_arc(folder, task, num_aug=num_aug)
        files = [folder / n for n in _arc_files(task)]
    sha = hashlib.sha256(b"".join(hashlib.sha256(f.read_bytes()).digest() for f in files))
    train, test = plan.splits["train"], plan.splits["test"]
    log(f"built {task} from {folder}: {len(plan.tasks):,} tasks, {len(plan.names):,} puzzle ids "
        f"({num_aug} augmentations per task), {len(train.example_pair):,} train and "
        f"{len(test.example_pair):,} test examples, in {time.time() - t0:.1f}s")
    return tuple(ArcSet(task, split, plan, f"{origin} ({what})",
                        dict(sha256=sha.hexdigest(), num_aug=num_aug)) for split, what in (
        ("train", f"{len(train.groups)} tasks' train pairs"),
        ("test", f"{len(test.groups)} tasks' {len(test.example_pair):,} test examples")))


# ---- generated sets: seeded, deduplicated, cached as .npz

def _generate(task, split, seed, count, exclude, log):
    """count distinct puzzles not in exclude (a set of input bytes), with per-puzzle meta."""
    spec = TASKS[task]
    rng = random.Random(f"{task}/{split}/{seed}")  # str seeds are stable across runs
    gen = torch.Generator().manual_seed(rng.getrandbits(62))
    xs, ys, extras, seen, t0 = [], [], [], set(exclude), time.time()
    shown = t0
    while len(xs) < count:
        made = FAMILIES[spec["kind"]].generate(rng, spec, gen)
        if made is None or made[0].tobytes() in seen:
            continue
        seen.add(made[0].tobytes())
        xs.append(made[0])
        ys.append(made[1])
        extras.append(made[2])
        if time.time() - shown > 10:
            shown, per = time.time(), (time.time() - t0) / len(xs)
            log(f"  generating {task} {split}: {len(xs):,}/{count:,}, {1e3 * per:.1f} ms each, "
                f"ETA {per * (count - len(xs)):.0f}s")
    return np.stack(xs), np.stack(ys), {k: np.array([e[k] for e in extras]) for k in extras[0]}


def _generated_task(task, seed, cache_dir, log):
    spec = TASKS[task]
    params = repr(sorted((k, v) for k, v in spec.items() if k != "description"))
    path = Path(cache_dir) / "generated" / f"{task}-seed{seed}.npz"
    try:
        arrays = dict(np.load(path)) if path.exists() else {}
    except Exception as e:  # truncated, garbled or empty: numpy and zipfile raise many kinds
        log(f"  the cached {path} cannot be read ({type(e).__name__}: {e}); generating it again")
        arrays = {}
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


def show(puzzles, tokens, ax=None, *, inputs=None, label=None, previous=None, fontsize=None):
    """Draw one (S,) token row on a matplotlib Axes (default: the current one) and return it.
    `puzzles` is a PuzzleSet or a kind string, as in decode(); inputs is the question (a Sudoku's
    givens are drawn bold on grey), label the right answer (cells that agree are green, any that
    disagree red), previous e.g. the answer one supervision step earlier (changed cells get an
    orange frame). The families' looks() say what each cell looks like (colours: SHOW_COLOURS);
    fontsize defaults to what fits the cells. Each artist's gid names its cell i = row * n + col
    ("cell i", "text i", "dot i", "frame i")."""
    family = _family(puzzles)
    t, x, y, before = common.rows(tokens, inputs=inputs, label=label, previous=previous)
    cells, box = family.looks(t, x, y)
    return common.draw(ax, cells, box, None if before is None else before != t, fontsize)
