"""Every task of data.TASKS has what train.py needs (docs/adding-a-task.md): a family that offers
the interface, a preset (or a recipe) for both models, tokens that fit its vocabulary and its CSV
alphabet and never put PAD in a label, and puzzles of its grid's size; a task without a preset is
one line before any data is loaded; --task offers exactly the registered tasks; show() draws any
rectangular grid. A new task is checked by adding its entry: nothing here names it."""
import inspect
import random
import types

import numpy as np
import pytest
import torch

import data
import train
from lib import config, presets
from puzzles import arc, csv_format, maze

# the family interface besides CHARS (the CSV alphabet, token = index + 1): name -> its parameters
INTERFACE = {"decode": ("t",), "problem": ("grid", "x", "y"), "puzzle_problem": ("x",),
             "generate": ("rng", "spec", "generator"), "stats": ("inputs", "labels"),
             "describe": ("spec",), "augment": ("grid", "inputs", "labels", "generator"),
             "looks": ("t", "x", "y")}
FAMILY_TASKS = [task for task, spec in data.TASKS.items() if "load" not in spec]
OWN_LOADER = [task for task, spec in data.TASKS.items() if "load" in spec]  # ARC


@pytest.mark.parametrize("task", FAMILY_TASKS)
def test_a_tasks_family_offers_the_interface(task):
    spec = data.TASKS[task]
    family = data.FAMILIES[spec["kind"]]
    assert spec["family"] is family, f"{task}: another module than the other {spec['kind']} tasks"
    assert isinstance(family.CHARS, str) and len(set(family.CHARS)) == len(family.CHARS) > 0
    for name, params in INTERFACE.items():
        f = getattr(family, name, None)
        assert callable(f), f"{family.__name__} has no function {name}{params}"
        assert len(inspect.signature(f).parameters) == len(params), \
            f"{family.__name__}.{name} must take {len(params)} arguments: {', '.join(params)}"


@pytest.mark.parametrize("task", OWN_LOADER)
def test_a_task_without_a_family_has_its_loader(task):
    spec = data.TASKS[task]
    assert callable(spec["load"]) and spec["kind"] not in data.FAMILIES
    assert spec["vocab"] == arc.VOCAB and spec["grid"][0] == spec["grid"][1] <= 30


def puzzles(task, count=3):
    """count generated (inputs, labels) of a task as (N, S) uint8 arrays, and its family."""
    spec = data.TASKS[task]
    family, rng, gen = spec["family"], random.Random(0), torch.Generator().manual_seed(0)
    made = []
    for _ in range(100 * count):  # generate may say None: call again
        if len(made) == count:
            break
        if (one := family.generate(rng, spec, gen)) is not None:
            made.append(one)
    assert len(made) == count, f"{task}: {family.__name__}.generate made {len(made)} of {count}"
    return np.stack([m[0] for m in made]), np.stack([m[1] for m in made]), family


@pytest.mark.parametrize("task", FAMILY_TASKS)
def test_a_tasks_puzzles_fit_its_grid_vocab_and_alphabet(task):
    spec = data.TASKS[task]
    x, y, family = puzzles(task)
    S = spec["grid"][0] * spec["grid"][1]
    assert x.shape == y.shape == (3, S) and x.dtype == y.dtype == np.uint8
    # a label cell of token 0 is PAD: never trained, never scored
    assert (y != data.IGNORE).all(), (f"{task}: a label holds token {data.IGNORE} (PAD, never "
                                      f"trained or scored): shift the family's tokens by one")
    # every token is a character of CHARS (so --solve reads and prints it) and below vocab
    assert x.min() >= 1 and max(x.max(), y.max()) <= len(family.CHARS)
    assert max(x.max(), y.max()) < spec["vocab"]
    if spec["repo"]:  # the official files' ids: PAD, then the CSV alphabet
        assert spec["vocab"] == len(family.CHARS) + 1
    # the family accepts its own puzzles, as data.check and --solve will
    assert family.problem(spec["grid"], x, y) is None
    for row in x:
        assert family.puzzle_problem(row) is None
        written = "".join(family.CHARS[t - 1] for t in row)  # as a CSV file or --solve has it
        assert (csv_format.grid_tokens(written, family, S) == row).all()
        assert isinstance(family.decode(row.tolist()), str)
    stats = family.stats(x, y)
    assert all(len(v) == len(x) for v in stats.values()), "stats: one value per puzzle"
    assert isinstance(family.describe(spec), str)
    # augmentation keeps the puzzles valid
    gen = torch.Generator().manual_seed(1)
    ax, ay = family.augment(spec["grid"], torch.from_numpy(x), torch.from_numpy(y), gen)
    assert ax.shape == ay.shape == (3, S)
    assert family.problem(spec["grid"], ax.numpy(), ay.numpy()) is None


@pytest.mark.parametrize("model", ["trm", "hrm"])
@pytest.mark.parametrize("task", list(data.TASKS))
def test_every_task_has_a_preset_of_both_models(task, model):
    cfg = config.resolve_config(["--model", model, "--task", task])
    preset = config.preset_of(model, task)
    recipe = data.TASKS[task].get("recipe")
    assert preset is presets.PRESETS[model].get(task, presets.PRESETS[model].get(recipe))
    assert (cfg["model"], cfg["task"]) == (model, task)
    assert {k: cfg[k] for k in preset} == preset
    assert set(config.RECURSION[model]) - {"grad_window"} <= set(preset), \
        f"the {model} preset of {task} lacks a recursion setting"


def test_a_task_without_a_preset_is_one_line_before_any_data(monkeypatch, tmp_path):
    monkeypatch.delitem(presets.PRESETS["hrm"], "sudoku4")
    monkeypatch.setattr(data, "load_task", lambda *a, **k: pytest.fail("data was loaded"))
    with pytest.raises(SystemExit) as e:
        train.main(["--model", "hrm", "--task", "sudoku4", "--out", str(tmp_path / "o")])
    assert str(e.value) == (
        "train.py: error: --task sudoku4 has no HRM preset: add recipe=\"sudoku6\" (a task whose "
        "presets it trains with) to its entry in data.TASKS, or an entry 'sudoku4' to "
        "PRESETS['hrm'] in lib/presets.py (docs/adding-a-task.md)")
    assert not (tmp_path / "o").exists()
    assert config.resolve_config(["--task", "sudoku4"])["steps"] == 600  # TRM's is still there


def test_a_recipe_trains_a_task_with_that_tasks_presets(monkeypatch):
    for model in ("trm", "hrm"):
        monkeypatch.delitem(presets.PRESETS[model], "sudoku4")
    monkeypatch.setitem(data.TASKS["sudoku4"], "recipe", "sudoku6")
    for model in ("trm", "hrm"):
        cfg = config.resolve_config(["--model", model, "--task", "sudoku4"])
        want = config.resolve_config(["--model", model, "--task", "sudoku6"])
        assert cfg.pop("task") == "sudoku4" and cfg.pop("out") == "out/sudoku4-" + model
        assert cfg == {k: v for k, v in want.items() if k not in ("task", "out")}
    monkeypatch.setitem(data.TASKS["sudoku4"], "recipe", "sudoku4")  # a task without presets
    with pytest.raises(SystemExit, match=r"^train.py: error: --task sudoku4: its recipe 'sudoku4' "
                                         r"in data.TASKS has no TRM preset; name one of sudoku, "):
        config.resolve_config(["--task", "sudoku4"])


def test_task_choices_are_the_registered_tasks(capsys):
    assert config.parser._option_string_actions["--task"].choices == sorted(data.TASKS)
    with pytest.raises(SystemExit):
        config.parser.parse_args(["--help"])
    assert "--task {" + ",".join(sorted(data.TASKS)) + "}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        config.parser.parse_args(["--task", "nonesuch"])
    assert "invalid choice: 'nonesuch'" in capsys.readouterr().err


# ---- show() on a rectangular grid

def new_axes():
    figure = pytest.importorskip("matplotlib.figure")
    return figure.Figure(figsize=(5, 3)).add_subplot()


def test_show_draws_a_rectangular_grid():
    t = np.full(15, maze.OPEN)  # 3 rows of 5: S top left, G bottom right, one wall
    t[0], t[14], t[7] = maze.START, maze.GOAL, maze.WALL
    ax = data.show(types.SimpleNamespace(kind="maze", grid=(3, 5)), t, new_axes())
    cells = {a.get_gid(): a for a in ax.patches if a.get_gid().startswith("cell")}
    assert len(cells) == 15
    assert all(cells[f"cell {i}"].get_xy() == (i % 5, i // 5) for i in range(15))  # row-major
    assert {a.get_gid(): a.get_text() for a in ax.texts} == {"text 0": "S", "text 14": "G"}
    lines = [s for c in ax.collections if c.get_gid() == "box lines" for s in c.get_segments()]
    assert sorted(tuple(map(tuple, s)) for s in lines) == [
        ((0, 0), (0, 3)), ((0, 0), (5, 0)), ((0, 3), (5, 3)), ((5, 0), (5, 3))]  # the border
    assert ax.get_xlim() == (-0.05, 5.05) and ax.get_ylim() == (3.05, -0.05)
    # grid= says the shape of a kind string's tokens: 5 rows of 3
    ax = data.show("maze", t, new_axes(), grid=(5, 3))
    assert [a.get_xy() for a in ax.patches if a.get_gid() == "cell 4"] == [(1, 1)]
    with pytest.raises(ValueError, match=r"15 tokens do not fill a grid of \(rows, cols\) = "
                                         r"\(4, 4\)"):
        data.show("maze", t, new_axes(), grid=(4, 4))
    with pytest.raises(ValueError, match="15 tokens do not make a square grid.*grid=\\(rows, "):
        data.show("maze", t, new_axes())
