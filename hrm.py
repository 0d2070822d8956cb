"""
HRM, the Hierarchical Reasoning Model (Wang et al. 2025, arXiv:2506.21734), in one file.

Two recurrent networks work at two speeds on two states: a low-level module f_L updates z_L T
times for every single update of z_H by the high-level module f_H, and this cycle runs N times.
Only z_H is read out. The paper's pseudocode (Fig. 4), which this file follows:

    def hrm(z, x, N=2, T=2):
        x = input_embedding(x)
        zH, zL = z
        with torch.no_grad():                 # all but the last two module calls
            for i in range(N * T - 1):
                zL = L_net(zL, zH, x)
                if (i + 1) % T == 0:
                    zH = H_net(zH, zL)
        zL = L_net(zL, zH, x)                 # one-step gradient: the last f_L call
        zH = H_net(zH, zL)                    # and the last f_H call
        return (zH, zL), output_head(zH), Q_head(zH)

    for x_input, y_true in train_dataloader:  # deep supervision: up to M_max segments per puzzle
        ...

The gradient through the last f_L and f_H calls alone is the "one-step" approximation of the
implicit-function-theorem gradient at a fixed point (paper §2): it assumes the recursion has
converged, which TRM questions (TRM paper §2.3). The code numbers the N(T+1) module calls of a
segment in one sequence, so that the calls that back-propagate can be any final stretch of it,
grad_window calls long: 2 (the default) is the one-step gradient above, T+1 the last cycle (as
TRM's last recursion), N(T+1) full backpropagation through the segment. Whatever the window, the
state carried to the next segment is detached.
Halting is learned by Q-learning: a halt and a continue logit, the continue target taken from one
more segment (`continue_target`). Training (the loop over segments with its carry of batch slots,
and the loss) lives in train.py, shared with TRM. Weights and layouts match the official code
(sapientinc/HRM), so its checkpoints load here (lib/official.py).

This file repeats trm.py's building blocks byte for byte; `diff hrm.py trm.py` shows what TRM
changed.

What this file does differently from the official code, each at its `# deviation:` comment:
- the puzzle embedding is a parameter with a sparse gradient, not a buffer with a per-sample copy;
  the summed gradient SignSGD consumes is the same (HRM.__init__);
- SwiGLU multiplies by the two halves of its gate/up weight instead of splitting one product:
  the same products and weights, a cheaper backward (SwiGLU.forward);
- TRM's MLP-t mixer is offered besides attention (HRMConfig.mlp_t), so that the two models can be
  compared with the same mixer on small tasks.
Not in the official code, and off by default: grad_window.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class HRMConfig:
    # the task
    vocab_size: int = 11  # V; Sudoku: PAD 0, blank 1, digits 2..10 (official: vocab_size)
    seq_len: int = 81  # S: grid cells, 81 for Sudoku, 900 for Maze (official: seq_len)
    num_puzzle_ids: int = 1  # puzzle-embedding rows, 1 for Sudoku/Maze (num_puzzle_identifiers)
    # the two networks f_L and f_H: separate stacks of post-norm blocks, same shape
    hidden_size: int = 512  # D (official: hidden_size)
    num_heads: int = 8  # attention heads of size D / num_heads (official: num_heads)
    expansion: float = 4.0  # SwiGLU width factor (official: expansion)
    num_layers: int = 4  # blocks in each of f_L and f_H (official: L_layers and H_layers)
    # deviation: sapientinc/HRM has attention only; TRM's MLP-t mixer is offered too (as in the TRM
    # repository's HRM) so the two models can be compared with the same mixer on small tasks
    mlp_t: bool = False  # MLP over the sequence instead of attention; no RoPE
    puzzle_emb_len: int = 1  # prefix tokens: one 512-d puzzle embedding (official: ceil(ndim / D))
    rope_theta: float = 10000.0  # RoPE base (official: rope_theta)
    # the recursion (paper §2). Careful: TRM's T counts something else (its H_cycles)
    N: int = 2  # high-level cycles: f_H updates per segment (official: H_cycles)
    T: int = 2  # low-level timesteps: f_L updates per high-level cycle (official: L_cycles)
    # how many of the N(T+1) module calls of a segment, the last ones, back-propagate
    grad_window: int | None = None  # None: 2, the one-step gradient (Fig. 4); not official
    M_max: int = 16  # max segments (supervision steps); eval always runs all (halt_max_steps)
    halt_exploration_prob: float = 0.1  # epsilon: P(a random minimum of 2..M_max segments)


# -----------------------------------------------------------------------------
# building blocks (kept identical in hrm.py, so `diff hrm.py trm.py` shows only what TRM changed)

def trunc_normal_(w: torch.Tensor, std: float) -> torch.Tensor:
    # JAX-style truncated normal on [-2, 2] standard deviations, rescaled so that the std of the
    # *truncated* distribution is `std` (truncation alone shrinks it to 0.8796)
    with torch.no_grad():
        nn.init.trunc_normal_(w, mean=0.0, std=1.0, a=-2.0, b=2.0)
        return w.mul_(std / 0.8796256610342398)


class Linear(nn.Linear):
    """Linear layer with LeCun init (std 1/sqrt(fan_in), truncated) and no bias by default."""

    def __init__(self, d_in: int, d_out: int, bias: bool = False):
        super().__init__(d_in, d_out, bias=bias)
        trunc_normal_(self.weight, std=1.0 / math.sqrt(d_in))
        if bias:
            nn.init.zeros_(self.bias)


def rms_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    # no learned scale; computed in fp32 and cast back, as in the official code
    h = x.float()
    return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rope_tables(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    # rotary position embedding, rotate-half convention; positions 0..L-1 include the puzzle prefix
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)  # (L, head_dim/2)
    emb = torch.cat([freqs, freqs], dim=-1)  # (L, head_dim)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, heads, L, head_dim); rotation done in fp32
    h = x.float()
    h1, h2 = h.chunk(2, dim=-1)
    rotated = torch.cat([-h2, h1], dim=-1)
    return (h * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    """Bidirectional multi-head attention with RoPE (no mask: every cell sees every cell)."""

    def __init__(self, d: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv_proj = Linear(d, 3 * d)  # output features: all query heads, then keys, then values
        self.o_proj = Linear(d, d)

    def forward(self, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, L, D = h.shape
        qkv = self.qkv_proj(h).view(B, L, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, L, head_dim)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=False)  # (B, heads, L, head_dim)
        return self.o_proj(out.transpose(1, 2).reshape(B, L, D))  # (B, L, D)


class SwiGLU(nn.Module):
    """down(silu(gate) * up), with one fused gate/up projection; width rounded up to 256."""

    def __init__(self, d: int, expansion: float):
        super().__init__()
        inter = 256 * math.ceil(round(expansion * d * 2 / 3) / 256)
        self.gate_up_proj = Linear(d, 2 * inter)  # first half gate, second half up
        self.down_proj = Linear(inter, d)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # deviation: two matmuls on the halves of the weight, where the official code splits the
        # output of one: the same products and weights, but the backward of that split joins two
        # (..., inter) gradients in a fresh tensor, 2-11% of a small CPU step (docs/profile.md)
        gate_w, up_w = self.gate_up_proj.weight.chunk(2)  # (inter, d) each
        return self.down_proj(F.silu(F.linear(h, gate_w)) * F.linear(h, up_w))


class Block(nn.Module):
    """Post-norm block: h <- norm(h + mix(h)); h <- norm(h + SwiGLU(h)).

    mix is attention over the sequence, or with mlp_t an MLP over the sequence axis shared by all
    channels (paper §4.5). With mlp_t the first norm is taken over the sequence axis too, because
    the official code normalises before transposing back (models/recursive_reasoning/trm.py)."""

    def __init__(self, d: int, seq_len: int, num_heads: int, expansion: float, mlp_t: bool):
        super().__init__()
        if mlp_t:
            self.mlp_t = SwiGLU(seq_len, expansion)
        else:
            self.self_attn = Attention(d, num_heads)
        self.mlp = SwiGLU(d, expansion)

    def forward(self, h: torch.Tensor, rope) -> torch.Tensor:
        if hasattr(self, "mlp_t"):
            h = h.transpose(1, 2)  # (B, D, L)
            h = rms_norm(h + self.mlp_t(h)).transpose(1, 2)  # (B, L, D), normalised over L
        else:
            h = rms_norm(h + self.self_attn(h, rope))  # (B, L, D)
        return rms_norm(h + self.mlp(h))  # (B, L, D)


# -----------------------------------------------------------------------------
# the model

class HRM(nn.Module):

    def __init__(self, config: HRMConfig):
        super().__init__()
        self.config = c = config
        D, L = c.hidden_size, c.puzzle_emb_len + c.seq_len
        # input embedding x: token embedding plus a puzzle-embedding prefix, scaled by sqrt(D)
        self.embed = nn.Embedding(c.vocab_size, D)
        trunc_normal_(self.embed.weight, std=1.0 / math.sqrt(D))
        # one learned vector per puzzle id, trained by SignSGD in train.py, zero at start
        # deviation: a parameter (its gradient sparse when there are many ids) rather than a
        # buffer with a per-sample copy; the gradient summed per id, which is what the official
        # SignSGD consumes, is the same
        self.puzzle_emb = nn.Parameter(torch.zeros(c.num_puzzle_ids, D))
        # the two networks, no weights shared: f_L (fast, sees x) and f_H (slow, sees only z_L)
        self.L_layers = nn.ModuleList(
            Block(D, L, c.num_heads, c.expansion, c.mlp_t) for _ in range(c.num_layers))
        self.H_layers = nn.ModuleList(
            Block(D, L, c.num_heads, c.expansion, c.mlp_t) for _ in range(c.num_layers))
        if not c.mlp_t:
            cos, sin = rope_tables(L, D // c.num_heads, c.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        # heads: the answer is read from z_H, the two Q-values from z_H's prefix token
        self.output_head = Linear(D, c.vocab_size)
        self.Q_head = Linear(D, 2, bias=True)  # (halt, continue)
        with torch.no_grad():
            self.Q_head.weight.zero_()
            self.Q_head.bias.fill_(-5.0)  # sigmoid(-5) = 0.007: both values start low and equal
        # fixed random initial states, not learned; every new puzzle starts from them
        self.register_buffer("zH_init", trunc_normal_(torch.empty(D), std=1.0))
        self.register_buffer("zL_init", trunc_normal_(torch.empty(D), std=1.0))
        self.max_steps = c.M_max  # what train.py's evaluation runs
        self.learns_continue = True  # train.py runs continue_target every step
        # the last grad_window module calls of a segment back-propagate
        self.grad_window = 2 if c.grad_window is None else c.grad_window
        if not 1 <= self.grad_window <= self.net_calls():
            raise ValueError(f"grad_window {self.grad_window} must be 1 .. N(T+1) = "
                             f"{self.net_calls()}, the module calls of one segment")

    def num_params(self) -> int:
        # the puzzle-embedding table is not counted (a buffer in the official code: "27M")
        return sum(p.numel() for name, p in self.named_parameters() if name != "puzzle_emb")

    def net_calls(self) -> int:
        """Module calls in one segment: N cycles of T f_L calls and one f_H call."""
        return self.config.N * (self.config.T + 1)

    def calls_per_step(self) -> tuple[int, int]:
        """Module calls per training step: run forward (the segment, and the one more segment of
        the Q-learning target), and back-propagated (the gradient window)."""
        return self.net_calls() * (2 if self.learns_continue else 1), self.grad_window

    def input_embedding(self, inputs: torch.Tensor, puzzle_ids: torch.Tensor) -> torch.Tensor:
        B, P = inputs.shape[0], self.config.puzzle_emb_len
        tokens = self.embed(inputs.long())  # (B, S, D)
        prefix = torch.zeros(B, P, tokens.shape[-1], dtype=tokens.dtype, device=tokens.device)
        # ARC's ~1M rows: a sparse gradient, the batch's rows only; Sudoku and Maze share one
        # row, whose gradient stays a plain dense one
        rows = F.embedding(puzzle_ids.long(), self.puzzle_emb,
                           sparse=self.config.num_puzzle_ids > 1)  # (B, D)
        prefix[:, 0] = rows  # (B, P, D), positions 1..P-1 stay zero
        x = torch.cat([prefix, tokens], dim=1)  # (B, L, D), L = P + S
        return math.sqrt(tokens.shape[-1]) * x

    def level(self, layers: nn.ModuleList, h: torch.Tensor, injection: torch.Tensor):
        """One module call: add the injected states to h, then run the module's blocks."""
        rope = None if self.config.mlp_t else (self.rope_cos, self.rope_sin)
        h = h + injection  # (B, L, D)
        for block in layers:
            h = block(h, rope)
        return h

    def L_net(self, z_L, z_H, x):
        return self.level(self.L_layers, z_L, z_H + x)  # f_L(z_L, z_H, x): the low level sees x

    def H_net(self, z_H, z_L):
        return self.level(self.H_layers, z_H, z_L)  # f_H(z_H, z_L): the high level does not

    def cycles(self, x, z_H, z_L, calls: range):
        """The module calls numbered `calls` of N high-level cycles in a row, N(T+1) calls in all:
        each cycle is T f_L calls, then one f_H call."""
        T = self.config.T
        for i in calls:
            if i % (T + 1) < T:
                z_L = self.L_net(z_L, z_H, x)
            else:
                z_H = self.H_net(z_H, z_L)
        return z_H, z_L

    def segment(self, x, z_H, z_L):
        """N high-level cycles of T low-level steps; only the last grad_window module calls
        back-propagate (paper §2 and Fig. 4, with the default window 2: the one-step gradient)."""
        start = self.net_calls() - self.grad_window  # calls before the window: no graph kept
        with torch.no_grad():
            z_H, z_L = self.cycles(x, z_H, z_L, range(start))
        z_H, z_L = self.cycles(x, z_H, z_L, range(start, self.net_calls()))
        logits = self.output_head(z_H)[:, self.config.puzzle_emb_len:]  # (B, S, V), prefix dropped
        q = self.Q_head(z_H[:, 0]).float()  # (B, 2): halt and continue logits
        return (z_H.detach(), z_L.detach()), logits, q

    def forward(self, state, inputs: torch.Tensor, puzzle_ids: torch.Tensor):
        """One segment (supervision step). state = (z_H, z_L), each (B, L, D); inputs (B, S) ids.
        Returns the detached new state, the answer logits (B, S, V) and the Q logits (B, 2)."""
        x = self.input_embedding(inputs, puzzle_ids)  # (B, L, D)
        return self.segment(x, *state)

    def initial_state(self, batch_size: int):
        L, D = self.config.puzzle_emb_len + self.config.seq_len, self.config.hidden_size
        return (self.zH_init.expand(batch_size, L, D), self.zL_init.expand(batch_size, L, D))

    def reset_state(self, state, reset: torch.Tensor):
        """Slots where reset (B,) is True start a new puzzle from the fixed initial states."""
        r = reset.view(-1, 1, 1)
        return (torch.where(r, self.zH_init, state[0]), torch.where(r, self.zL_init, state[1]))

    def wants_to_halt(self, q: torch.Tensor) -> torch.Tensor:
        return q[:, 0] > q[:, 1]  # Q(halt) > Q(continue)

    @torch.no_grad()
    def halt(self, q: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Which slots stop after this supervision step; steps (B,) counts the steps taken so far.

        Training: halt when the head wants to (wants_to_halt) or at max_steps. With probability
        halt_exploration_prob a slot first has to reach a random minimum of 2..max_steps steps.
        Evaluation: always run all max_steps (the official code ignores q there)."""
        halted = steps >= self.max_steps
        if self.training and self.max_steps > 1:
            halted = halted | self.wants_to_halt(q)
            explore = torch.rand(steps.shape, device=steps.device) < \
                self.config.halt_exploration_prob
            min_steps = explore * torch.randint_like(steps, 2, self.max_steps + 1)
            halted = halted & (steps >= min_steps)
        return halted

    @torch.no_grad()
    def continue_target(self, state, inputs, puzzle_ids, steps) -> torch.Tensor:
        """Q-learning target of the continue logit (learns_continue only): the value of the next
        step, read from one more supervision step run from the new state (no replay buffer, no
        target network). At the last step continuing is impossible: the target is its halt value."""
        _, _, q_next = self(state, inputs, puzzle_ids)
        best = torch.where(steps >= self.max_steps, q_next[:, 0], q_next.max(-1).values)
        return torch.sigmoid(best)  # (B,)


# -----------------------------------------------------------------------------
# official checkpoints

def official_state_dict(official: dict) -> dict:
    """Rename an official HRM state dict (keys like `inner.H_level.layers.0.mlp.down_proj.weight`,
    optionally prefixed `_orig_mod.` by torch.compile) to this file's names."""
    renames = {"embed_tokens.embedding_weight": "embed.weight", "puzzle_emb.weights": "puzzle_emb",
               "lm_head.weight": "output_head.weight", "q_head.weight": "Q_head.weight",
               "q_head.bias": "Q_head.bias", "H_init": "zH_init", "L_init": "zL_init"}
    out = {}
    for key, value in official.items():
        key = key.removeprefix("_orig_mod.").removeprefix("model.").removeprefix("inner.")
        key = renames.get(key, key.replace("H_level.layers.", "H_layers.")
                          .replace("L_level.layers.", "L_layers."))
        out[key] = value
    return out

