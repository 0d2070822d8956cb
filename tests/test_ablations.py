"""python -m lib.ablations: every (row, seed) trains in its own process, and the table is the
mean and spread of what those runs wrote."""
import json
import statistics

import pytest

from lib import ablations

TINY = "--hidden 16 --heads 2 --batch-size 8 --eval-limit 16 --eval-batch-size 16 --log-every 1"


def test_the_table_summarises_every_seed_of_every_row(tmp_path):
    out = tmp_path / "ablations"
    table = ablations.main(["--task", "sudoku4", "--steps", "2", "--seeds", "0,3", "--rows",
                            "full,off", "--extra", TINY, "--out", str(out)])
    runs = json.loads((out / "runs.json").read_text())["runs"]
    assert [(r["key"], r["seed"]) for r in runs] == [("full", 0), ("full", 3), ("off", 0),
                                                    ("off", 3)]
    for row in table:
        mine = [r for r in runs if r["key"] == row["key"]]
        # each run's number is the one its own results.json holds
        for r in mine:
            written = json.loads((out / f"{r['key']}-seed{r['seed']}" / "results.json").read_text())
            assert r["exact"] == written["test_exact"] and r["steps"] == written["step"] == 2
            assert r["cell"] == written["test_cell"]
            assert r["peak_mib"] > 50  # a torch process: its own peak, not the parent's
        values = [r["exact"] for r in mine]
        assert row["exact"] == statistics.mean(values)
        assert row["exact_sd"] == pytest.approx(statistics.stdev(values))
    # recursion off ran with T=1, n=1, N_sup=1
    config = (out / "off-seed0" / "log.txt").read_text()
    assert '"T": 1' in config and '"N_sup": 1' in config
    text = (out / "table.md").read_text()
    assert "| TRM (T=2, n=3, 2 layers, MLP-t, EMA) |" in text and "87.4%" in text
    assert (out / "ablations.png").stat().st_size > 0


def test_an_unknown_row_is_one_line():
    with pytest.raises(SystemExit):
        ablations.main(["--rows", "full,bogus"])
