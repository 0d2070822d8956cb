"""
TRM, the Tiny Recursive Model (Jolicoeur-Martineau 2025, arXiv:2510.04871), in one file.

One small network `net` is applied over and over to two states: the embedded answer y and a latent
reasoning state z. The paper's pseudocode (Fig. 3), which this file follows:

    def latent_recursion(x, y, z, n=6):
        for i in range(n):            # latent reasoning
            z = net(x, y, z)
        y = net(y, z)                 # refine the answer
        return y, z

    def deep_recursion(x, y, z, n=6, T=3):
        with torch.no_grad():         # T-1 recursions without gradient
            for j in range(T - 1):
                y, z = latent_recursion(x, y, z, n)
        y, z = latent_recursion(x, y, z, n)   # the last one with full backprop
        return (y.detach(), z.detach()), output_head(y), Q_head(y)

    for x_input, y_true in train_dataloader:  # deep supervision: up to N_sup steps per puzzle
        ...

The code numbers the T(n+1) net calls of a supervision step in one sequence, so that the calls
that back-propagate can be any final stretch of it, grad_window calls long: n+1 (the default) is
the last recursion, as above; 2 is HRM's "1-step gradient" (the last z update and the y update);
T(n+1) is full backpropagation through the step. Whatever the window, the state carried to the
next supervision step is detached.

Training (the deep-supervision loop with its carry of batch slots, and the loss) lives in
train.py. This file holds the model, the halting rule and the renaming of official checkpoints:
weights and layouts match the official code (SamsungSAILMontreal/TinyRecursiveModels), so its
checkpoints load here (lib/official.py).

What this file does differently from the official code, each at its `# deviation:` comment:
- the puzzle embedding is a parameter with a sparse gradient, not a buffer with a per-sample copy;
  the summed gradient SignSGD consumes is the same (TRM.__init__);
- SwiGLU multiplies by the two halves of its gate/up weight instead of splitting one product:
  the same products and weights, a cheaper backward (SwiGLU.forward);
- act_continue (Table 1's "w/ ACT") learns HRM's continue target, as the official TRM's own
  branch for it fails as released (TRMConfig).
Not in the official code, and off by default: grad_window and separate_nets (Table 1's ablations).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class TRMConfig:
    # the task
    vocab_size: int = 11  # V; Sudoku: PAD 0, blank 1, digits 2..10 (official: vocab_size)
    seq_len: int = 81  # S: grid cells, 81 for Sudoku, 900 for Maze (official: seq_len)
    num_puzzle_ids: int = 1  # puzzle-embedding rows, 1 for Sudoku/Maze (num_puzzle_identifiers)
    # the network: one stack of post-norm blocks (paper §4.1-4.4)
    hidden_size: int = 512  # D (official: hidden_size)
    num_heads: int = 8  # attention heads of size D / num_heads (official: num_heads)
    expansion: float = 4.0  # SwiGLU width factor (official: expansion)
    num_layers: int = 2  # blocks in `net`, the paper's "2 layers" (official: L_layers)
    # Table 1's "w/ separate f_H, f_L" ablation (82.4% against TRM's 87.4% on Sudoku-Extreme)
    separate_nets: bool = False  # y updates get their own num_layers blocks, as HRM's f_H
    mlp_t: bool = False  # MLP over the sequence, not attention; no RoPE (§4.5; official: mlp_t)
    puzzle_emb_len: int = 16  # prefix tokens; only the first is non-zero (official: puzzle_emb_len)
    rope_theta: float = 10000.0  # RoPE base (official: rope_theta)
    # the recursion (paper Fig. 3)
    n: int = 6  # latent updates z <- net(x, y, z) per latent_recursion (official: L_cycles)
    T: int = 3  # latent_recursions per supervision step (official: H_cycles)
    # how many of the T(n+1) net calls of a step, the last ones, back-propagate (Table 1's
    # "w/ 1-step gradient" row, 56.5% against 87.4%, is 2; T(n+1) is full backprop)
    grad_window: int | None = None  # None: n+1, the last recursion (Fig. 3); not official
    N_sup: int = 16  # max supervision steps; eval always runs all (official: halt_max_steps)
    halt_exploration_prob: float = 0.1  # P(a random minimum of 2..N_sup steps), same official name
    # Table 1's "w/ ACT" row (86.1% against 87.4%): learn Q(continue) by Q-learning, as HRM, and
    # halt when Q(halt) > Q(continue) (official: no_ACT_continue, negated).
    # deviation: the official TRM's continue branch fails as released (it unpacks five values
    # from a call that returns three); this runs HRM's target instead (continue_target)
    act_continue: bool = False


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

class TRM(nn.Module):

    def __init__(self, config: TRMConfig):
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
        # the single network, used for both the latent update and the answer update
        self.net_layers = nn.ModuleList(
            Block(D, L, c.num_heads, c.expansion, c.mlp_t) for _ in range(c.num_layers))
        if c.separate_nets:  # ablation: a second network, for the answer update only
            self.y_net_layers = nn.ModuleList(
                Block(D, L, c.num_heads, c.expansion, c.mlp_t) for _ in range(c.num_layers))
        if not c.mlp_t:
            cos, sin = rope_tables(L, D // c.num_heads, c.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        # heads: the answer is read from y, the halting logit from y's first prefix token
        self.output_head = Linear(D, c.vocab_size)
        # two logits, halt and continue, as in the official checkpoints; TRM uses halt only (§4.6)
        self.Q_head = Linear(D, 2, bias=True)
        with torch.no_grad():
            self.Q_head.weight.zero_()
            self.Q_head.bias.fill_(-5.0)  # sigmoid(-5) = 0.007: start by (almost) never halting
        # fixed random initial states, not learned; every new puzzle starts from them
        self.register_buffer("y_init", trunc_normal_(torch.empty(D), std=1.0))
        self.register_buffer("z_init", trunc_normal_(torch.empty(D), std=1.0))
        self.max_steps = c.N_sup  # what train.py's evaluation runs
        self.learns_continue = c.act_continue  # train.py then runs continue_target every step
        # the last grad_window net calls of a supervision step back-propagate
        self.grad_window = c.n + 1 if c.grad_window is None else c.grad_window
        if not 1 <= self.grad_window <= self.net_calls():
            raise ValueError(f"grad_window {self.grad_window} must be 1 .. T(n+1) = "
                             f"{self.net_calls()}, the net calls of one supervision step")

    def num_params(self) -> int:
        # the puzzle-embedding table is not counted, as in the paper's "5M / 7M"
        return sum(p.numel() for name, p in self.named_parameters() if name != "puzzle_emb")

    def net_calls(self) -> int:
        """Net calls in one supervision step: T times (n latent updates, one answer update)."""
        return self.config.T * (self.config.n + 1)

    def calls_per_step(self) -> tuple[int, int]:
        """Net calls per training step: run forward (the step, and with act_continue the one more
        step of the Q-learning target), and back-propagated (the gradient window)."""
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

    def net(self, h: torch.Tensor, injection: torch.Tensor, answer=False) -> torch.Tensor:
        """Add the injected states, then run the blocks (the paper's net(x, y, z)). The answer
        update has blocks of its own only with separate_nets."""
        rope = None if self.config.mlp_t else (self.rope_cos, self.rope_sin)
        layers = self.y_net_layers if answer and self.config.separate_nets else self.net_layers
        h = h + injection  # (B, L, D)
        for block in layers:
            h = block(h, rope)
        return h

    def latent_recursions(self, x, y, z, calls: range):
        """The net calls numbered `calls` of T latent recursions in a row, T(n+1) calls in all:
        each recursion is n latent updates, then one answer update (Fig. 3, latent_recursion)."""
        n = self.config.n
        for i in calls:
            if i % (n + 1) < n:
                z = self.net(z, y + x)  # latent reasoning sees the question x
            else:
                y = self.net(y, z, answer=True)  # the answer update does not
        return y, z

    def deep_recursion(self, x, y, z):
        """T recursions, only the last grad_window net calls back-propagated (Fig. 3,
        deep_recursion, with the default window n+1: the last recursion)."""
        start = self.net_calls() - self.grad_window  # calls before the window: no graph kept
        with torch.no_grad():
            y, z = self.latent_recursions(x, y, z, range(start))
        y, z = self.latent_recursions(x, y, z, range(start, self.net_calls()))
        logits = self.output_head(y)[:, self.config.puzzle_emb_len:]  # (B, S, V), prefix dropped
        q = self.Q_head(y[:, 0]).float()  # (B, 2): halt and continue logits
        # TRM reads the halt logit only (§4.6); with act_continue both, as HRM
        return (y.detach(), z.detach()), logits, q if self.config.act_continue else q[:, 0]

    def forward(self, state, inputs: torch.Tensor, puzzle_ids: torch.Tensor):
        """One supervision step. state = (y, z), each (B, L, D); inputs (B, S) token ids.
        Returns the detached new state, the answer logits (B, S, V) and the halting logit (B,)
        (with act_continue the halt and continue logits (B, 2))."""
        x = self.input_embedding(inputs, puzzle_ids)  # (B, L, D)
        return self.deep_recursion(x, *state)

    def initial_state(self, batch_size: int):
        L, D = self.config.puzzle_emb_len + self.config.seq_len, self.config.hidden_size
        return (self.y_init.expand(batch_size, L, D), self.z_init.expand(batch_size, L, D))

    def reset_state(self, state, reset: torch.Tensor):
        """Slots where reset (B,) is True start a new puzzle from the fixed initial states."""
        r = reset.view(-1, 1, 1)
        return (torch.where(r, self.y_init, state[0]), torch.where(r, self.z_init, state[1]))

    def wants_to_halt(self, q: torch.Tensor) -> torch.Tensor:
        if self.learns_continue:  # Table 1's "w/ ACT": HRM's rule
            return q[:, 0] > q[:, 1]  # Q(halt) > Q(continue)
        return q > 0  # the head's guess: "my answer is already right"

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
    """Rename an official TRM state dict (keys like `inner.L_level.layers.0.mlp.down_proj.weight`,
    optionally prefixed `_orig_mod.` by torch.compile) to this file's names."""
    renames = {"embed_tokens.embedding_weight": "embed.weight", "puzzle_emb.weights": "puzzle_emb",
               "lm_head.weight": "output_head.weight", "q_head.weight": "Q_head.weight",
               "q_head.bias": "Q_head.bias", "H_init": "y_init", "L_init": "z_init"}
    out = {}
    for key, value in official.items():
        key = key.removeprefix("_orig_mod.").removeprefix("model.").removeprefix("inner.")
        key = renames.get(key, key.replace("L_level.layers.", "net_layers."))
        out[key] = value
    return out

