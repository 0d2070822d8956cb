"""Shared test helpers (pytest fixtures)."""

import functools
import http.server
import random
import threading

import pytest
import torch


@pytest.fixture
def paper_sudoku(tmp_path) -> list:
    """train.py flags for Sudoku-Extreme's file format in tmp_path: four generated 9x9 puzzles
    repeated to the 1k train rows that the paper's recipe samples, and 8 test rows; the paper
    preset's model without its download."""
    from puzzles import sudoku
    rng = random.Random(0)
    rows = []
    for _ in range(4):
        puzzle, answer = sudoku.make(rng, 9)
        question = "".join("." if t == 1 else str(t - 1) for t in puzzle)
        rows.append(f"gen,{question},{''.join(str(t - 1) for t in answer)},0")
    for name, count in (("train.csv", 1000), ("test.csv", 8)):
        (tmp_path / name).write_text("source,question,answer,rating\n" +
                                     "\n".join(rows[i % 4] for i in range(count)) + "\n")
    return ["--task", "sudoku", "--data-dir", str(tmp_path), "--device", "cpu", "--out",
            str(tmp_path / "out")]


@pytest.fixture
def random_batch():
    """random_batch(model, B=5) -> (inputs (B, S): random non-PAD token ids, puzzle_ids (B,): 0)."""
    def make(model, B=5):
        inputs = torch.randint(1, model.config.vocab_size, (B, model.config.seq_len))
        return inputs, torch.zeros(B, dtype=torch.long)
    return make


@pytest.fixture
def hf_server(tmp_path):
    """A loopback HTTP server laid out like the Hugging Face hub: (root folder it serves, its URL,
    the paths requested so far)."""
    root, hits = tmp_path / "srv", []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()
