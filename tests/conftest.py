"""Shared test helpers (pytest fixtures)."""

import functools
import http.server
import threading

import pytest
import torch


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
