"""The docs (README.md, docs/*.md) and the notebooks' committed outputs agree with the code: links
resolve, quoted parameter counts, flags and code names are the code's, the notebooks' outputs come
from their full setting, and a results table is written in one place. Each failure names the
file, the line and the fix. Nothing is trained or generated: the whole file takes seconds."""

import argparse
import functools
import importlib
import json
import os
import re
import shlex
import types
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

import data
import lib
from lib import ablations, config
import train

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

CODE_SPAN = re.compile(r"`([^`]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
# a command of train.py (also under torchrun) or of the ablation runner: (its tool, its arguments)
COMMAND = re.compile(r"(?:python|torchrun .*?) (train\.py|-m lib\.ablations)(?= |$)(.*)")
FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")


class Piece(NamedTuple):
    """A part of a page: a prose paragraph (or list), one row of a table, or one line of a ```
    block with its backslash continuations; block is the whole table or code block around it."""
    page: Path
    line: int
    text: str
    kind: str  # "prose", "row" or "code"
    block: str


def pieces(page: Path) -> list[Piece]:
    found, block, start, fenced = [], [], 0, False
    for number, line in enumerate(page.read_text().splitlines() + [""], 1):
        fence = line.lstrip().startswith("```")
        if fence or not (fenced or line.strip()):  # a fence, or a blank line outside one, ends it
            found += split(page, start, "\n".join(block), fenced) if block else []
            block, fenced = [], fenced != fence
        else:
            if not block:
                start = number
            block.append(line)
    return found


def split(page: Path, start: int, text: str, fenced: bool) -> list[Piece]:
    if fenced:
        return [Piece(page, start + text.count("\n", 0, m.start()), m.group(), "code", text)
                for m in re.finditer(r"^(?:.*\\\n)*.*", text, re.M) if m.group()]
    rows = text.split("\n")
    if len(rows) > 1 and re.fullmatch(r"\|[-|: ]+\|", rows[1]):  # a table; skip its header
        return [Piece(page, start + i, row, "row", text) for i, row in enumerate(rows) if i > 1]
    return [Piece(page, start, text, "prose", text)]


def prose(page: Path) -> list[Piece]:
    """The pieces of a page outside ``` blocks, where links and code spans are Markdown's."""
    return [piece for piece in pieces(page) if piece.kind != "code"]


def where(piece: Piece, offset: int = 0) -> str:
    """file:line of a place in a piece, for the failure messages."""
    line = piece.line + piece.text.count("\n", 0, offset)
    return f"{os.path.relpath(piece.page, ROOT)}:{line}"


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def commands(piece: Piece) -> list[tuple[int, str]]:
    """(offset, command) of what a piece quotes: a code line is one command, prose and table
    rows quote theirs in code spans; a shell comment (# ...) is not part of the command."""
    found = [(0, piece.text)] if piece.kind == "code" else \
        [(m.start(), m.group(1)) for m in CODE_SPAN.finditer(piece.text)]
    return [(at, " ".join(re.split(r"\s#", c.replace("\\\n", " "))[0].split()))
            for at, c in found]


def options(parser: argparse.ArgumentParser) -> set:
    return {s for action in parser._actions for s in action.option_strings}


# -----------------------------------------------------------------------------
# links


def anchors(page: Path) -> set:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to '-', and a
    repeated heading numbered -1, -2, ..."""
    seen, found = {}, set()
    for piece in prose(page):
        for line in piece.text.split("\n"):
            if re.match(r"#{1,6} ", line):
                slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                found.add(slug + (f"-{seen[slug]}" if slug in seen else ""))
                seen[slug] = seen.get(slug, 0) + 1
    return found


def test_every_relative_link_and_image_resolves():
    """A link's file exists relative to the page's own folder, and its #anchor names a heading of
    the target page (anchors into other files than Markdown are not checked, nor http(s) links)."""
    broken, checked = [], 0
    for page in PAGES:
        for piece in prose(page):
            # a [x](y) inside a code span is not a link: blank the spans, keeping the offsets
            text = CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), piece.text)
            for m in LINK.finditer(text):
                target = m.group(1)
                if re.match(r"[a-z]+:", target):  # https:, mailto:
                    continue
                checked += 1
                file, _, anchor = target.partition("#")
                path = (page.parent / file).resolve() if file else page
                if not path.exists():
                    broken.append(f"{where(piece, m.start())}: ({target}): no such file "
                                  f"{os.path.relpath(path, ROOT)}; a link is relative to the "
                                  f"page's folder, {os.path.relpath(page.parent, ROOT)}/")
                elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                    broken.append(f"{where(piece, m.start())}: ({target}): no heading of "
                                  f"{os.path.relpath(path, ROOT)} has the anchor #{anchor}; "
                                  f"its anchors: {', '.join(sorted(anchors(path)))}")
    assert checked, "no relative link found: the page parser is broken"
    assert not broken, "\n".join(broken)


# -----------------------------------------------------------------------------
# parameter counts

# a count: a number in a table's params column, or written "N params", "N parameters", "params: N"
COUNT = re.compile(r"(\d[\d,]*\d)\s+param(?:eter)?s\b|\bparams:?\s+(\d[\d,]*\d)")
# the banner of a log excerpt, e.g. "task sudoku6 | model trm (mlp) | device cpu ..."
BANNER = re.compile(r"^task (\S+) \| model (\w+) \((\w+)\)", re.M)
# what model_config reads that shapes the weights; a command's other flags (--steps, --seed S) do
# not change the count and need not even parse
SIZE_FLAGS = {"--model", "--task", "--net", "--hidden", "--layers", "--prefix-len",
              "--separate-nets"}


def model_argv(piece: Piece) -> list[str] | None:
    """The model a piece names: its first train.py command's size flags, else, in a log excerpt,
    the banner's task, model and mixer; None if it names none."""
    for _, command in commands(piece):
        if (m := COMMAND.match(command)) and m.group(1) == "train.py":
            words, argv = shlex.split(m.group(2)), []
            for i, word in enumerate(words):
                if word in SIZE_FLAGS:
                    takes = config.parser._option_string_actions[word].nargs != 0
                    argv += words[i:i + 1 + takes]
            return argv
    banner = BANNER.search(piece.block) if piece.kind == "code" else None
    return ["--task", banner[1], "--model", banner[2], "--net", banner[3]] if banner else None


def parameter_counts(page: Path) -> list[tuple[str, int, list[str] | None]]:
    """(where, count, the model's argv) of every parameter count quoted on a page."""
    found = []
    for piece in pieces(page):
        counts = [(m.start(), m.group(1) or m.group(2)) for m in COUNT.finditer(piece.text)]
        if piece.kind == "row" and "params" in (header := cells(piece.block.split("\n")[0])):
            cell = cells(piece.text)[header.index("params")]
            counts += [(0, cell)] if re.fullmatch(r"[\d,]+", cell) else []
        argv = model_argv(piece) if counts else None
        found += [(where(piece, at), int(n.replace(",", "")), argv) for at, n in counts]
    return found


@functools.cache
def num_params(argv: tuple) -> int:
    cfg = config.resolve_config(list(argv))
    spec = data.TASKS[cfg["task"]]
    # all that model_config reads from a training set, without generating it (sudoku6: 50 s);
    # one puzzle id, as num_params leaves the puzzle-embedding table out
    stand_in = types.SimpleNamespace(vocab_size=spec["vocab"], num_puzzle_ids=1,
                                     seq_len=spec["grid"][0] * spec["grid"][1])
    Model, model_config = train.model_config(cfg, stand_in)
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        return Model(model_config).num_params()


def count_errors(pages: list[Path]) -> tuple[list[str], int]:
    """(the wrong or unattributed counts, how many counts were checked)."""
    errors, quoted = [], [q for page in pages for q in parameter_counts(page)]
    for place, count, argv in quoted:
        if argv is None:
            errors.append(f"{place}: {count:,} params, but no model is named: put the "
                          f"`python train.py ...` command that builds it in the same table row, "
                          f"paragraph or code line")
        elif count != (true := num_params(tuple(argv))):
            errors.append(f"{place}: {count:,} params quoted, but `python train.py "
                          f"{' '.join(argv)}` builds {true:,}: write {true:,}")
    return errors, len(quoted)


def test_every_quoted_parameter_count_is_the_models():
    """A count (a number in a table's params column, or written "N params", "N parameters" or
    "params: N") is num_params() of the model that its table row, paragraph or code line names
    with a `python train.py` command, or a log excerpt with its banner. Rounded sizes (27M) are
    not checked."""
    errors, checked = count_errors(PAGES)
    assert checked >= 5, f"only {checked} parameter counts found: the parser is broken"
    assert not errors, "\n".join(errors)


def test_a_count_of_another_model_is_caught(tmp_path):
    # HRM sudoku6's count written for HRM maze-small (7x7 cells, not 6x6: 351,106), in a table and
    # in prose; and a count that names no model
    page = tmp_path / "page.md"
    page.write_text("| task | params | command |\n|---|---|---|\n"
                    "| maze-small | 311,426 | `python train.py --model hrm --task maze-small` |\n\n"
                    "HRM (`python train.py --model hrm --task maze-small --seed S`) has 311,426\n"
                    "params.\n\nTRM has 156,290 parameters.\n")
    errors, checked = count_errors([page])
    assert checked == 3
    assert [e.split(": ", 1)[0] for e in errors] == [f"{os.path.relpath(page, ROOT)}:{n}"
                                                     for n in (3, 5, 8)]
    assert "builds 351,106" in errors[0] and "builds 351,106" in errors[1]
    assert "no model is named" in errors[2]


# -----------------------------------------------------------------------------
# flags


def ablation_flags(monkeypatch) -> set:
    """The flags of python -m lib.ablations, whose parser main() builds: stop it at parse_args."""
    parsers = []

    def stop(parser, *args, **kwargs):
        parsers.append(parser)
        raise SystemExit

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)
    with pytest.raises(SystemExit):
        ablations.main([])
    return options(parsers[0])


def test_every_quoted_flag_is_one_the_command_takes(monkeypatch):
    """The flags of a quoted `python train.py`, `torchrun ... train.py` or `python -m
    lib.ablations` command (in a code span or a ``` block) are its parser's; a flag quoted on its
    own (`--grad-window K`) is one of train.py or lib.ablations. Other tools are not checked."""
    parsers = {"train.py": options(config.parser), "-m lib.ablations": ablation_flags(monkeypatch)}
    wrong, tools = [], set()
    for page in PAGES:
        for piece in pieces(page):
            for at, command in commands(piece):
                if m := COMMAND.match(command):
                    tools.add(m.group(1))
                    known, args, tool = parsers[m.group(1)], m.group(2), m.group(1)
                elif command.startswith("--"):
                    known, args, tool = set.union(*parsers.values()), command, "train.py"
                else:
                    continue
                wrong += [f"{where(piece, at)}: {flag} in `{command}` is not a flag of python "
                          f"{tool}: use one that `python {tool} --help` lists"
                          for flag in FLAG.findall(args) if flag not in known]
    assert tools == set(parsers), "no command of some tool found: the page parser is broken"
    assert not wrong, "\n".join(wrong)


def test_running_md_lists_exactly_the_flags_a_resume_may_change():
    page = ROOT / "docs" / "running.md"
    text = " ".join(page.read_text().split())
    listed = re.search(r"Only these may be given anew(.*?)\. ", text)  # to the sentence's end
    assert listed, (f"{os.path.relpath(page, ROOT)}: the sentence 'Only these may be given anew "
                    f"...' is gone; it must list lib/config.py's RESUME_MAY_CHANGE")
    written = re.findall(r"`(--[\w-]+)`", listed.group(1))
    code = [config.flag(k) for k in config.RESUME_MAY_CHANGE if k != "resume"]
    line = next(i for i, s in enumerate(page.read_text().splitlines(), 1) if "given anew" in s)
    assert sorted(written) == sorted(code), (
        f"{os.path.relpath(page, ROOT)}:{line}: the flags a resume may change are "
        f"RESUME_MAY_CHANGE in lib/config.py; missing {sorted(set(code) - set(written))}, not "
        f"in the code {sorted(set(written) - set(code))}")


# -----------------------------------------------------------------------------
# names of the code


def test_the_code_the_docs_name_exists():
    """A path of the repository in a code span (`lib/config.py`, `tests/test_train.py`) exists,
    and a dotted name in a module of it (`lib.optim.SignSGD`, `lib.evaluate.solve(model, ...)`,
    `data.show`) is defined there: a moved or renamed function leaves no stale name behind."""
    missing = []
    for page in PAGES:
        for piece in prose(page):
            for m in CODE_SPAN.finditer(piece.text):
                span = m.group(1)
                if re.fullmatch(r"(lib|puzzles|tests|notebooks|docs)/[\w./-]+", span) and \
                        not (ROOT / span).exists():
                    missing.append(f"{where(piece, m.start())}: `{span}` does not exist")
                name = re.fullmatch(r"((?:lib|puzzles)\.\w+|train|trm|hrm|data)\.(\w+)(\(.*\))?",
                                    span)
                if name and name.group(2) not in ("py", "csv") and \
                        not hasattr(importlib.import_module(name.group(1)), name.group(2)):
                    missing.append(f"{where(piece, m.start())}: `{span}`: {name.group(1)} has no "
                                   f"{name.group(2)}; name the module that defines it")
    assert not missing, "\n".join(missing)


def test_the_file_maps_name_every_module():
    """docs/files.md says what every file holds, and lib/__init__.py's docstring what lib/ holds."""
    files_md = (ROOT / "docs" / "files.md").read_text()
    modules = [p for d in (ROOT, ROOT / "lib", ROOT / "puzzles") for p in sorted(d.glob("*.py"))
               if p.name != "__init__.py"]
    unmapped = [os.path.relpath(p, ROOT) for p in modules
                if not re.search(rf"^\s*{re.escape(p.name)}\s", files_md, re.M)]
    assert not unmapped, f"docs/files.md: add a line to the file map for {', '.join(unmapped)}"
    unnamed = [p.stem for p in modules if p.parent.name == "lib"
               if not re.search(rf"\({p.stem}\)", lib.__doc__)]
    assert not unnamed, f"lib/__init__.py: its docstring names no ({', '.join(unnamed)})"


# -----------------------------------------------------------------------------
# notebooks


def printed(notebook: Path) -> str:
    """Everything a notebook's committed outputs show as text."""
    outputs = [o for cell in json.loads(notebook.read_text())["cells"]
               if cell["cell_type"] == "code" for o in cell["outputs"]]
    return "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                   for o in outputs)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_come_from_the_full_setting(notebook):
    """Each notebook prints its FAST setting; the committed outputs are FAST=0's, the fuller
    setting the docs quote (FAST on is only for the test suite's quick run)."""
    said = re.findall(r"FAST = (True|False)", printed(notebook))
    rerun = f"FAST=0 jupyter execute --inplace {os.path.relpath(notebook, ROOT)}"
    assert said, f"{notebook.name}: no committed output says FAST = ...: print it, then {rerun}"
    assert set(said) == {"False"}, f"{notebook.name} was committed with FAST on: {rerun}"


# -----------------------------------------------------------------------------
# results written once


def test_a_results_table_is_written_once():
    """No table row that holds a percentage is written, identical, in two pages: a table shown in
    two places drifts apart, so one page holds it and the other links to it. Rows holding only
    the papers' numbers are not told apart from measured ones: a copied row of those drifts too."""
    rows = {}
    for page in PAGES:
        for piece in pieces(page):
            if piece.kind == "row" and re.search(r"\d%", piece.text):
                rows.setdefault(piece.text.strip(), []).append(piece)
    twice = [f"{' and '.join(where(p) for p in places)}: the same row ({row[:60]}...): keep the "
             f"table in one page and link to it from the other"
             for row, places in rows.items() if len({p.page for p in places}) > 1]
    assert not twice, "\n".join(twice)
