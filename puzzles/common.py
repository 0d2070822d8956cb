"""What the puzzle families share: downloading a file, finding the first bad cell of a batch, the
8 symmetries of a square grid, and drawing a rectangular grid of cells on a matplotlib Axes."""
import math
import os
import time
import urllib.request

import numpy as np
import torch


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


def first_hit(bad):
    """(row, column) of the first True of a (N, K) mask, or None."""
    hits = np.argwhere(bad)
    return tuple(hits[0]) if len(hits) else None


def dihedral_maps(n: int, device=None) -> torch.Tensor:
    """(8, n * n) source cell of every cell under the 8 rotations and reflections of an n x n
    grid: four rotations, then the same four followed by a left-right mirror."""
    base = torch.arange(n * n, device=device).view(n, n)
    return torch.stack([base.rot90(k).flip(1) if f else base.rot90(k)
                        for f in (0, 1) for k in range(4)]).view(8, n * n)


# ---- pictures: matplotlib is imported inside draw(), so the data code needs only torch and numpy

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


def _as_row(name, value, size=None) -> np.ndarray:
    """One puzzle's tokens as a 1-D int array; a clear error for a batch or a wrong length."""
    a = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    if a.ndim != 1 or (size is not None and len(a) != size):
        want = "S" if size is None else f"S = {size}"
        raise ValueError(f"show: {name} must be one puzzle, a 1-D row of {want} tokens (e.g. "
                         f"test.inputs[i]); got shape {tuple(a.shape)}")
    return a.astype(np.int64)


def rows(tokens, **others) -> list:
    """tokens and each of others (None or one row of as many tokens) as 1-D int arrays, for show."""
    t = _as_row("tokens", tokens)
    return [t] + [None if v is None else _as_row(name, v, len(t)) for name, v in others.items()]


def grid_shape(size: int, grid=None) -> tuple[int, int]:
    """(rows, cols) of a grid of `size` tokens, for show: `grid` if given, else a square."""
    if grid is None:
        n = math.isqrt(size)
        if n < 2 or n * n != size:
            raise ValueError(f"show: {size} tokens do not make a square grid (S = n * n); give "
                             f"its shape with grid=(rows, cols)")
        return n, n
    if len(grid) != 2 or grid[0] * grid[1] != size:
        raise ValueError(f"show: {size} tokens do not fill a grid of (rows, cols) = {grid}")
    return int(grid[0]), int(grid[1])


def draw(ax, cells: list, grid: tuple[int, int], box: tuple[int, int] | None, changed=None,
         fontsize=None):
    """Draw a grid of (rows, cols) cells on ax (default: the current Axes). cells[i] = (fill,
    text, given, dot) of cell i = row * cols + col: its fill colour, its text, whether that text
    is the question's (bold ink) or the answer's (pen), and whether it holds a path dot. changed:
    cells to frame. box: (rows, cols) between thick lines, None for the outer border only. Each
    artist's gid names its cell ("cell i", "text i", ...)."""
    from matplotlib.patches import Circle, Rectangle
    if ax is None:
        import matplotlib.pyplot as plt
        ax = plt.gca()
    rows, cols = grid
    w, h = ax.get_window_extent().size  # display pixels: size the text to the cells
    cell_pt = min(w / cols, h / rows) * 72 / ax.figure.dpi
    fontsize = fontsize or 0.55 * cell_pt
    c = SHOW_COLOURS
    for i, (fill, text, given, dot) in enumerate(cells):
        row, col = divmod(i, cols)
        ax.add_patch(Rectangle((col, row), 1, 1, facecolor=fill, edgecolor="#a0a0a0",
                               lw=min(0.8, 0.04 * cell_pt), gid=f"cell {i}"))
        if text:
            ax.text(col + 0.5, row + 0.5, text, ha="center", va="center", fontsize=fontsize,
                    color=c["ink"] if given else c["pen"],
                    fontweight="bold" if given else "normal", gid=f"text {i}")
        if dot:
            ax.add_patch(Circle((col + 0.5, row + 0.5), 0.22, color=c["pen"], gid=f"dot {i}"))
        if changed is not None and changed[i]:
            ax.add_patch(Rectangle((col + 0.07, row + 0.07), 0.86, 0.86, fill=False,
                                   edgecolor=c["changed"], lw=max(1.0, 0.1 * cell_pt),
                                   gid=f"frame {i}"))
    # the outer border, and the box borders of a Sudoku
    box = box or grid
    ax.vlines(sorted({*range(0, cols, box[1]), cols}), 0, rows, color="black", lw=2,
              gid="box lines")
    ax.hlines(sorted({*range(0, rows, box[0]), rows}), 0, cols, color="black", lw=2,
              gid="box lines")
    ax.set(xlim=(-0.05, cols + 0.05), ylim=(rows + 0.05, -0.05), aspect="equal")
    ax.set_axis_off()
    return ax
