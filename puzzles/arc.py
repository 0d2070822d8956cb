"""ARC-AGI as the official TRM builder makes it (spec arc.md §2), its sampler (§2.4) and its
evaluator (§3), without writing the 7 GB of example arrays: a Plan holds every puzzle's name,
task, dihedral transform and colour map, and the (k, S) arrays of any examples are made on the fly.

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
RETRIES * num_aug tries, then the offsets. The replay decodes the raw words of the same legacy
MT19937 stream in bulk (_LegacyStream) and deduplicates with the task's own symmetries
(_symmetries) instead of hashing every candidate, which gives the same copies: the whole ARC-1
plan takes about 6 s and 0.3 GB on one core, where the builder's lists pass 7 GB (spec §2.4).
"""
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAD, EOS = 0, 1  # colour c is token c + 2
VOCAB = 12
CANVAS = 30  # the official canvas side (ARCMaxGridSize): seq_len 900
MAX_SIDE = 30  # the largest ARC grid
SEED, NUM_AUG, RETRIES = 42, 1000, 5  # builder defaults: up to RETRIES * NUM_AUG aug() tries
SEP = "|||"  # name of a copy: "{task}|||t{k}|||{colour map as 10 digits}"
BLANK = "<blank>"  # puzzle id 0: padding rows of an eval batch
KS = (1, 2, 5, 10, 100, 1000)  # the evaluator's pass@K; the paper's number is pass@2
VERSIONS = {  # (subsets in the builder's command-line order, the test set): spec §2
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
    with open(path, encoding="utf-8") as f:
        return json.load(f)


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


# ---- the augmentations: 8 dihedral transforms x colour maps with black fixed

_DIHEDRAL = (lambda g: g, lambda g: np.rot90(g, 1), lambda g: np.rot90(g, 2),
             lambda g: np.rot90(g, 3), np.fliplr, np.flipud, np.transpose,
             lambda g: np.fliplr(np.rot90(g, 1)))


def dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    """Transform t of the builder: 0 identity, 1/2/3 rot90 x1/x2/x3, 4 fliplr, 5 flipud,
    6 transpose, 7 fliplr(rot90) (the anti-diagonal reflection)."""
    return _DIHEDRAL[t](grid)


DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)  # dihedral(dihedral(g, t), DIHEDRAL_INVERSE[t]) == g
TRANSPOSING = (1, 3, 6, 7)  # the transforms that swap height and width
IDENTITY = np.arange(10, dtype=np.uint8)


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


def _compose_table() -> np.ndarray:
    """(8, 8): COMPOSE[t, d] is the transform equal to d followed by t."""
    probe = np.arange(6).reshape(2, 3)
    key = lambda g: (g.shape, g.tobytes())
    index = {key(dihedral(probe, k)): k for k in range(8)}
    return np.array([[index[key(dihedral(dihedral(probe, d), t))] for d in range(8)]
                     for t in range(8)])


COMPOSE = _compose_table()


# ---- the official random stream, decoded in bulk

AUG_DRAWS = (7, 8, 7, 6, 5, 4, 3, 2, 1)  # aug(): randint(0, 8), then permutation's swaps 8..1
CHUNK = 1 << 21  # raw words fetched at a time


def _mask(hi: int) -> int:
    return (1 << hi.bit_length()) - 1


class _LegacyStream:
    """The global NumPy RNG after np.random.seed(seed), as raw 32-bit words of its MT19937.
    Every draw the builder makes is "an integer in 0..hi": randint(0, hi + 1), and each swap of
    shuffle() and permutation() (Fisher-Yates from the end, hi = i). Legacy NumPy answers it with
    the first word w whose w & mask <= hi, mask = 2^k - 1 the smallest >= hi, and uses no word
    when hi = 0. Decoding the words ourselves lets a million aug() calls be a few array passes."""

    def __init__(self, seed: int):
        self._rs = np.random.RandomState(seed)
        self.words = np.empty(0, np.uint32)
        self.base, self.pos = 0, 0  # words[0] is word number base; words[pos] the next one
        self._trials = None  # aug() draws decoded ahead from pos: (t, maps, absolute ends)

    def _words(self, start: int, n: int) -> np.ndarray:
        """Words number start .. start + n - 1 (start >= base + pos), fetching more as needed."""
        if self.base + len(self.words) < start + n:
            fresh = self._rs.randint(0, 2**32, size=start + n - self.base - len(self.words)
                                     + CHUNK, dtype=np.uint32)  # exactly the raw words
            self.words = np.concatenate([self.words[self.pos:], fresh])
            self.base, self.pos = self.base + self.pos, 0
        return self.words[start - self.base:start - self.base + n]

    def below(self, hi: int) -> int:
        """One draw in 0..hi."""
        self._trials = None  # decoded aug() draws start at pos, which this draw moves
        if hi == 0:
            return 0
        while True:
            v = int(self._words(self.base + self.pos, 1)[0]) & _mask(hi)
            self.pos += 1
            if v <= hi:
                return v

    def shuffle(self, items: list):
        """np.random.shuffle(items), in place."""
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i)
            items[i], items[j] = items[j], items[i]

    def peek_trials(self, n: int) -> tuple:
        """(t (n,), maps (n, 10)) of the next n aug() calls, without consuming them."""
        if self._trials is None:
            self._trials = (np.empty(0, np.int64), np.empty((0, 10), np.uint8),
                            np.array([self.base + self.pos]))
        while len(self._trials[0]) < n:
            start = int(self._trials[2][-1])
            t, maps, ends = _decode_trials(self._words(start, CHUNK))
            old = self._trials
            self._trials = (np.concatenate([old[0], t]), np.concatenate([old[1], maps]),
                            np.concatenate([old[2], start + ends]))
        return self._trials[0][:n], self._trials[1][:n]

    def take_trials(self, k: int):
        """Consume the first k peeked aug() calls."""
        t, maps, ends = self._trials
        self.pos = int(ends[k]) - self.base
        self._trials = (t[k:], maps[k:], ends[k:])

    def low_words(self, n: int, mask: int) -> list:
        """The next n words & mask as a list of small ints, for a tight Python loop; skip()
        then consumes the ones it used."""
        self._trials = None
        return (self._words(self.base + self.pos, n) & mask).tolist()

    def skip(self, n: int):
        self.pos += n


def _decode_trials(w: np.ndarray) -> tuple:
    """Every complete aug() call in the words w, back to back from w[0]: (t (n,), maps (n, 10),
    ends (n,)), ends[i] the index after call i's last word."""
    N, pad = len(w), len(AUG_DRAWS)
    low = np.concatenate([(w & 15).astype(np.uint8), np.zeros(pad, np.uint8)])  # (N + pad,)
    nxt = {}  # nxt[hi][p]: the first word at or after p that a draw in 0..hi keeps (N: none)
    for hi in set(AUG_DRAWS) - {1, 3, 7}:  # hi = 2^k - 1 keeps every word: nxt[hi][p] = p
        keep = (low & _mask(hi)) <= hi  # the padding past N keeps, so calls can run off the end
        kept = np.flatnonzero(keep).astype(np.int32)
        nxt[hi] = kept[np.cumsum(keep, dtype=np.int32) - keep]  # (N + pad,)
    end = np.arange(N + 1, dtype=np.int32)  # (N + 1,): where a call from each word ends
    spare = np.empty_like(end)
    for hi in AUG_DRAWS:  # in place, 2M words at a time
        if hi in nxt:
            np.take(nxt[hi], end, out=spare)
            end, spare = spare, end
        end += 1
    starts, p, q = [], 0, end.item(0)
    while q <= N:  # the calls follow each other: the next starts where this one ended
        starts.append(p)
        p, q = q, end.item(q)
    at, p = [], np.array(starts, np.int32)  # at[k]: the word of draw k of each call
    for hi in AUG_DRAWS:
        p = nxt[hi][p] if hi in nxt else p
        at.append(p)
        p = p + 1
    draws = [w[a] & _mask(hi) for a, hi in zip(at, AUG_DRAWS)]  # 9 x (n,)
    perm = np.tile(np.arange(1, 10, dtype=np.uint8), (len(starts), 1))  # (n, 9)
    rows = np.arange(len(starts))
    for i, j in zip(range(8, 0, -1), draws[1:]):  # Fisher-Yates: swap perm[i] and perm[j]
        a, b = perm[:, i].copy(), perm[rows, j]
        perm[rows, j] = a
        perm[:, i] = b
    maps = np.concatenate([np.zeros((len(starts), 1), np.uint8), perm], 1)  # (n, 10)
    return draws[0].astype(np.int64), maps, p.astype(np.int64)


# ---- dedup: the copies that equal the task, or each other, by the task's symmetries

def _pair_key(a: np.ndarray, b: np.ndarray) -> bytes:
    """Exact identity of a pair: both shapes and all cells."""
    return bytes(a.shape + b.shape) + a.tobytes() + b.tobytes()


def _pattern(a: np.ndarray, b: np.ndarray) -> tuple:
    """(the pair with colours 1..9 renamed by order of first appearance, those colours): two
    pairs differ by a colour map fixing 0 exactly when their patterns are equal."""
    colours, first = np.unique(np.concatenate([a.ravel(), b.ravel()]), return_index=True)
    order = colours[np.argsort(first)]
    order = order[order != 0]
    rename = np.zeros(10, np.uint8)
    rename[order] = np.arange(1, len(order) + 1)
    return _pair_key(rename[a], rename[b]), tuple(order.tolist())


def _colour_maps(pairs: list, by_pattern: dict) -> list:
    """Every colour map sigma (a dict) that turns the multiset `pairs` into the task's: each
    distinct pair is matched to a task pair of the same pattern and multiplicity, as long as
    the colour correspondences agree. by_pattern: pattern -> [(key, multiplicity, colours)]."""
    mine = Counter(_pair_key(a, b) for a, b in pairs)
    first = {_pair_key(a, b): (a, b) for a, b in pairs}
    items = sorted(((mine[k], *_pattern(*first[k])) for k in mine), key=lambda it: -len(it[2]))
    found = []  # the most colours first: later pairs then mostly have a single candidate

    def extend(k, fwd, bwd, used):
        if k == len(items):
            found.append(fwd)
            return
        count, pattern, order = items[k]
        for key, n, image in by_pattern.get(pattern, ()):
            if key not in used and n == count and all(
                    fwd.get(c, i) == i and bwd.get(i, c) == c for c, i in zip(order, image)):
                extend(k + 1, {**fwd, **dict(zip(order, image))},
                       {**bwd, **dict(zip(image, order))}, used | {key})

    extend(0, {}, {}, frozenset())
    return found


def _symmetries(pairs: list, colours: list) -> list:
    """The augmentations that leave the task's multiset of pairs unchanged: every (d, images)
    with dihedral(sigma[P], d) == P, sigma mapping colours[i] -> images[i] (the identity
    (0, colours) among them)."""
    count = Counter(_pair_key(a, b) for a, b in pairs)
    by_pattern = {}
    for key, (a, b) in {_pair_key(a, b): (a, b) for a, b in pairs}.items():
        pattern, order = _pattern(a, b)
        by_pattern.setdefault(pattern, []).append((key, count[key], order))
    zeros = Counter(_pair_key(a == 0, b == 0) for a, b in pairs)
    out = []
    for d in range(8):
        moved = [(dihedral(a, d), dihedral(b, d)) for a, b in pairs]
        if Counter(_pair_key(a == 0, b == 0) for a, b in moved) != zeros:
            continue  # colour 0 never changes, so its cells must already match
        out += [(d, [sigma[c] for c in colours]) for sigma in _colour_maps(moved, by_pattern)]
    return out


def _augmentations(task: Task, rng: _LegacyStream, num_aug: int) -> tuple:
    """(t (c,), maps (c, 10)) of the task's copies, the original first: the builder's loop of
    aug() calls, keeping a copy unless it equals the task or a kept copy (its puzzle_hash, the
    sorted sha256 of all pairs, demos and tests together), until 1 + num_aug or RETRIES * num_aug
    calls. Instead of hashing, two calls give equal copies exactly when they differ by one of
    the task's symmetries, so each call's key is the smallest (transform, images of the task's
    colours) over its coset: one integer per call, all calls of a task at once."""
    t0, maps0 = np.zeros(1, np.int64), IDENTITY[None]
    if num_aug == 0:
        return t0, maps0
    pairs = task.pairs()
    colours = [c for c in np.unique(np.concatenate([g.ravel() for p in pairs for g in p]))
               .tolist() if c]
    digits = 10 ** np.arange(len(colours))[::-1]  # images of the colours as decimal digits
    symmetries = _symmetries(pairs, colours)

    def coset_key(t, maps):  # (n,): min over symmetries s of the key of (t, maps) after s
        return np.min([COMPOSE[t, d] * 10 ** len(colours) + maps[:, images] @ digits
                       for d, images in symmetries], axis=0)

    tries = RETRIES * num_aug
    t, maps = rng.peek_trials(tries)
    key = coset_key(t, maps)
    new = np.zeros(tries, bool)
    new[np.unique(key, return_index=True)[1]] = True  # first call with its key
    new &= key != coset_key(t0, maps0)[0]  # and not the task itself
    kept = np.cumsum(new)
    used = tries if kept[-1] < num_aug else int(np.searchsorted(kept, num_aug)) + 1
    rng.take_trials(used)
    keep = np.flatnonzero(new[:used])
    return np.concatenate([t0, t[keep]]), np.concatenate([maps0, maps[keep]])


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


def _draw_offsets(rng: _LegacyStream, plan: Plan, split: Split):
    """Fill split.offsets as the builder draws them, after all aug() calls: per puzzle
    no_aug = randint(0, n) stays at (0, 0); every other example draws its row, then its column,
    as randint(0, canvas - H + 1), randint(0, canvas - W + 1), where H x W is the larger of its
    input and output after the transform. A plain loop over small ints: millions of draws, each
    starting where the one before ended (about 2 s for ARC-1)."""
    offsets = split.offsets.reshape(-1).tolist()
    e = 0
    for g, first, last in zip(split.groups, split.group_indices[:-1], split.group_indices[1:]):
        pairs = split.pairs[g]
        rooms = [[(plan.canvas - max(a.shape[k], b.shape[k]), plan.canvas - max(
            a.shape[1 - k], b.shape[1 - k])) for a, b in pairs] for k in (0, 1)]
        ids = split.puzzle_identifiers[first:last]
        his = [len(pairs) - 1] + [hi for r in rooms[0] for hi in r]
        masks = {hi: _mask(hi) for hi in his}
        # a draw keeps each word with probability > 1/2: 3 words per draw is plenty
        words = rng.low_words(3 * len(ids) * len(his) + 64, max(masks.values()))
        p = 0  # words[p]: the next word

        def draw(hi):  # one randint(0, hi + 1)
            nonlocal p
            if hi == 0:
                return 0
            v = words[p] & masks[hi]
            p += 1
            while v > hi:
                v = words[p] & masks[hi]
                p += 1
            return v

        for t in plan.trans[ids].tolist():
            keep = draw(len(pairs) - 1)
            for i, (hr, hc) in enumerate(rooms[t in TRANSPOSING]):
                if i != keep:
                    offsets[2 * (e + i)] = draw(hr)
                    offsets[2 * (e + i) + 1] = draw(hc)
            e += len(pairs)
        rng.skip(p)
    split.offsets = np.array(offsets, np.uint8).reshape(-1, 2)


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
    rng = _LegacyStream(seed)
    tasks, trans, maps = [], [], []
    for subset in subsets:
        order = list(subset)
        rng.shuffle(order)
        for task in order:
            t, m = _augmentations(task, rng, num_aug)
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
        _draw_offsets(rng, plan, plan.splits["train"])
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


# ---- the sampler: the official epoch (spec §2.4)

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


# ---- scoring (spec §3, §5)

def vote(answers: list, q_halt) -> list:
    """Pool the answers (grids in the original task's frame) given to one test input: a list of
    (grid, votes, mean sigmoid(q_halt)), best first by (votes, mean q); full ties keep the order
    in which the answers first came, as the official sort does."""
    q = 1 / (1 + np.exp(-np.asarray(q_halt, np.float64)))
    pool = {}
    for grid, qi in zip(answers, q):
        entry = pool.setdefault((grid.shape, grid.tobytes()), [grid, 0, 0.0])
        entry[1] += 1
        entry[2] += qi
    ranked = [(grid, n, total / n) for grid, n, total in pool.values()]
    return sorted(ranked, key=lambda r: (r[1], r[2]), reverse=True)  # a stable sort


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


def score(plan: Plan, preds, q_halt, ks=KS) -> tuple:
    """Score predictions for the whole test split: preds (E, S) tokens and q_halt (E,) logits
    of the final supervision step, in test-split example order (test_batches without padding).
    Each is cropped, mapped back to the task's frame and pooled per test input by vote(); the
    official evaluator finds the test input by the hash of the cropped input instead, the same
    here since no task repeats a test input. Returns (pass_at_k's dict, submission, ranked)."""
    s = plan.splits["test"]
    pid = s.puzzle_identifiers[np.searchsorted(s.puzzle_indices, np.arange(len(preds)),
                                               side="right") - 1]  # (E,)
    answers = {}
    for e, i in enumerate(pid.tolist()):
        grid = invert(crop(preds[e], plan.canvas), plan.trans[i], plan.maps[i])
        key = (int(plan.task_of[i]), int(s.example_pair[e]))
        answers.setdefault(key, []).append((grid, q_halt[e]))
    ranked, truth = {}, {}
    for g in s.groups.tolist():
        task = plan.tasks[g]
        truth[task.name] = [y for _, y in s.pairs[g]]
        ranked[task.name] = [[grid for grid, _, _ in vote(*zip(*answers[g, i]))]
                             if (g, i) in answers else [] for i in range(len(s.pairs[g]))]
    return pass_at_k(ranked, truth, ks), submission(ranked), ranked
