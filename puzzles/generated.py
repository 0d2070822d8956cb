"""Generated puzzle sets (sudoku4, sudoku6, maze-small, and the fallback for the benchmarks):
seeded, deduplicated, train and test disjoint, cached as .npz under the cache folder."""
import os
import random
import time
from pathlib import Path

import numpy as np
import torch


def arrays(task: str, spec: dict, family, seed: int, cache_dir, log) -> tuple:
    """({split_column: array} of the generated train and test sets of a task, the .npz cache
    path): read from the cache, or made by family.generate and cached. The test set excludes
    every train puzzle; a cache made with other TASKS parameters is made again (not the ones that
    leave the puzzles as they are: the description, the family's module, the recipe)."""
    params = repr(sorted((k, v) for k, v in spec.items()
                         if k not in ("description", "family", "recipe")))
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
            x, y, meta = generate(task, spec, family, split, seed, spec["n_" + split], seen, log)
            seen = {r.tobytes() for r in x}
            arrays.update({f"{split}_{k}": v for k, v in dict(inputs=x, labels=y, **meta).items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        with open(part, "wb") as f:
            np.savez_compressed(f, params=params, **arrays)
        os.replace(part, path)
        log(f"  saved {path} in {time.time() - t0:.0f}s")
    return arrays, path


def generate(task, spec, family, split, seed, count, exclude, log):
    """count distinct puzzles not in exclude (a set of input bytes), with per-puzzle meta."""
    rng = random.Random(f"{task}/{split}/{seed}")  # str seeds are stable across runs
    gen = torch.Generator().manual_seed(rng.getrandbits(62))
    xs, ys, extras, seen, t0 = [], [], [], set(exclude), time.time()
    shown = t0
    while len(xs) < count:
        made = family.generate(rng, spec, gen)
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
