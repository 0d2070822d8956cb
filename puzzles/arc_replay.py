"""The randomness of the official ARC builder, replayed fast (puzzles/arc.py builds on it): the 8
dihedral transforms and how they compose, the global NumPy stream after np.random.seed(42) read as
raw words and decoded in bulk, the deduplication of augmented copies by the task's own
symmetries, and the translation offsets. Every draw comes out as the builder's, in its order
(tests/test_arc.py checks them against a slow transcription that calls RandomState itself)."""
from collections import Counter

import numpy as np

# ---- the 8 dihedral transforms of the builder

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


class LegacyStream:
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


def augmentations(task, rng: LegacyStream, num_aug: int, retries: int) -> tuple:
    """(t (c,), maps (c, 10)) of the task's copies, the original first: the builder's loop of
    aug() calls, keeping a copy unless it equals the task or a kept copy (its puzzle_hash, the
    sorted sha256 of all pairs, demos and tests together), until 1 + num_aug or retries * num_aug
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

    tries = retries * num_aug
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


# ---- the translation offsets of the train split

def draw_offsets(rng: LegacyStream, plan, split):
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
