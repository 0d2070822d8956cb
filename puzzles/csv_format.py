"""The official CSV files of Sudoku-Extreme and Maze-Hard: a header source,question,answer,rating,
then one puzzle a row, each grid written row-major in its family's alphabet (CHARS, token =
index + 1). Every error names the file, the data row and what is wrong."""
import csv
import hashlib
import itertools
import os

import numpy as np
import torch

from puzzles.common import first_hit


def _rows(path, rows=None):
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


def read(path, family, shape, rows=None):
    """(inputs, labels, meta) of an official CSV of a puzzle family (module puzzles.sudoku or
    puzzles.maze), checked by the family's rules; rows: 0-based data rows to keep, in order."""
    picked = list(_rows(path, None if rows is None else [int(r) + 1 for r in rows]))
    if not picked:
        raise ValueError(f"{path}: no data rows after the header")
    num, qs, ans, ratings = zip(*picked)
    where = lambda k: f"{path}, data row {num[k]}"
    lut = np.zeros(256, np.uint8)  # char -> token; 0 marks an unknown character
    lut[np.frombuffer(family.CHARS.encode(), np.uint8)] = np.arange(1, len(family.CHARS) + 1)
    size = shape[0] * shape[1]
    out = []
    for col, name in ((qs, "question"), (ans, "answer")):
        lens = np.fromiter(map(len, col), int, len(col))
        if hit := first_hit((lens != size)[:, None]):
            raise ValueError(f"{where(hit[0])}: {name} has {lens[hit[0]]} characters, not {size}")
        chars = np.frombuffer("".join(col).encode("ascii", "replace"), np.uint8)
        tok = lut[chars].reshape(-1, size)  # (N, S)
        if hit := first_hit(tok == 0):
            raise ValueError(f"{where(hit[0])}: {name} has unknown character "
                             f"{col[hit[0]][hit[1]]!r} at cell {hit[1]}")
        out.append(tok)
    if problem := family.problem(shape, *out):
        raise ValueError(f"{where(int(problem[0]))}: {problem[1]}")
    try:
        meta = {"rating": np.array(ratings).astype(np.float32)}
    except ValueError:  # keep a non-numeric rating column as text
        meta = {"rating": np.array(ratings)}
    meta.update(family.stats(*out))
    return torch.from_numpy(out[0]), torch.from_numpy(out[1]), meta


def rows_and_sha256(path) -> tuple[int, str]:
    """Data rows (lines after the header) and sha256 of a CSV file, in one pass over its bytes."""
    digest, lines, last = hashlib.sha256(), 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"  # a last line without its newline
    return max(0, lines - 1), digest.hexdigest()


def grid_tokens(text: str, family, size: int) -> np.ndarray:
    """One grid written in a family's CSV alphabet as (size,) tokens; ValueError says what is
    wrong with it (its length, an unknown character)."""
    if len(text) != size:
        raise ValueError(f"has {len(text)} characters, a grid of this task has {size}")
    bad = next((i for i, ch in enumerate(text) if ch not in family.CHARS), None)
    if bad is not None:
        raise ValueError(f"has {text[bad]!r} at cell {bad}, not one of {family.CHARS!r}")
    return np.array([family.CHARS.index(ch) + 1 for ch in text], np.uint8)


def read_grids(where: str, family, size: int) -> torch.Tensor:
    """(N, size) tokens of the puzzles to solve: `where` is one grid in the family's CSV alphabet,
    or a file of them, one per line. ValueError names the grid and what is wrong with it (its
    length, a character, the family's puzzle_problem: two equal givens, no S...)."""
    is_file = os.path.isfile(where)
    lines = open(where).read().split() if is_file else [where]
    rows = []
    for i, line in enumerate(lines, 1):
        name = f"{where}, line {i}" if is_file else "puzzle"
        try:
            x = grid_tokens(line, family, size)
        except ValueError as e:
            raise ValueError(f"{name} {e}") from None
        if problem := family.puzzle_problem(x):
            raise ValueError(f"{name}: {problem}")
        rows.append(x)
    if not rows:
        raise ValueError(f"{where} holds no puzzle")
    return torch.from_numpy(np.stack(rows))
