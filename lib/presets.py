"""The presets: what `python train.py --model M --task T` trains, one literal entry per (model,
task), each line with where its values come from. Every key is a flag of train.py (lib/config.py),
and a flag given on the command line replaces its value; a key left out (grad_window) takes the
model's default. A task whose data.TASKS entry says recipe="sudoku6" trains with that task's
entries here, for both models (docs/adding-a-task.md).

The papers' recipes come first, from the official code: SamsungSAILMontreal/TinyRecursiveModels
(config/cfg_pretrain.yaml, config/arch/trm.yaml, the commands of its README.md) and sapientinc/HRM
(config/cfg_pretrain.yaml, config/arch/hrm_v1.yaml, the commands of its README.md). Sudoku's and
maze's steps are the official epochs of the 1k training puzzles at batch 768, in 10 evaluation
intervals that each drop their last partial batch, as the official loader does (5,000 epochs =
6,510 steps, 320 puzzles left over). "ours" marks a value that no official file gives.

Then the small tasks, our own recipes (there is no official one): a 2-core CPU learns them in
minutes. The MLP-t mixer learns small grids far faster than attention, as the TRM paper found for
Sudoku; both models use it there (and an EMA), so that they are compared on equal terms. Their
--heads only matter with --net att."""

PRESETS = {
    "trm": {
        # ---- the papers' recipes
        # TRM-MLP, T=3, n=6 (paper Table 4: 87.4%): the official README's pretrain_mlp_t_sudoku
        "sudoku": dict(
            # README: arch.mlp_t=True arch.L_layers=2 arch.H_cycles=3 arch.L_cycles=6; trm.yaml:
            # hidden_size, num_heads, puzzle_emb_len, halt_max_steps, halt_exploration_prob,
            # no_ACT_continue: True; one network for both updates (the TRM paper)
            net="mlp", layers=2, T=3, n=6, hidden=512, heads=8, prefix_len=16, N_sup=16,
            halt_explore=0.1, act_continue=False, separate_nets=False,
            # cfg_pretrain.yaml: global_batch_size, lr (constant after warmup: lr_min_ratio 1.0),
            # lr_warmup_steps, ema_rate (README: ema=True); README: weight_decay=1.0
            # puzzle_emb_lr=1e-4 puzzle_emb_weight_decay=1.0
            batch_size=768, lr=1e-4, warmup=2000, ema=0.999, weight_decay=1.0, emb_lr=1e-4,
            emb_weight_decay=1.0,
            # README: epochs=50000 eval_interval=5000 of the 1000 puzzles; augmented as the
            # README's build_sudoku_dataset.py --num-aug 1000 (here a fresh isomorph each draw)
            steps=65100, eval_every=6510, augment=True,
            # ours: the batch at once (31.6 GiB compiled on an H100, docs/reproduce.md),
            # intermediate evals on the first 20,000 test puzzles (the final one on all), a log
            # line per 100 steps
            grad_accum=1, eval_limit=20000, log_every=100),
        # TRM-Att, n=4 (paper Table 4: 85.3%): the official README's pretrain_att_maze30x30
        "maze": dict(
            # README: no arch.mlp_t (trm.yaml mlp_t: False, attention), arch.L_layers=2
            # arch.H_cycles=3 arch.L_cycles=4 (the paper says n=6); trm.yaml as for sudoku
            net="att", layers=2, T=3, n=4, hidden=512, heads=8, prefix_len=16, N_sup=16,
            halt_explore=0.1, act_continue=False, separate_nets=False,
            # cfg_pretrain.yaml and README, as for sudoku
            batch_size=768, lr=1e-4, warmup=2000, ema=0.999, weight_decay=1.0, emb_lr=1e-4,
            emb_weight_decay=1.0,
            # README: epochs=50000 eval_interval=5000 of the 1000 mazes; no augmentation, as the
            # README's build_maze_dataset.py without --aug (the paper: dihedral)
            steps=65100, eval_every=6510, augment=False,
            # ours: 3 micro-batches of 256 mazes (49.5 GiB on an H100; all 768 at once need about
            # 150 GiB), evals on all 1,000 test mazes, a log line per 100 steps
            grad_accum=3, eval_limit=1000, log_every=100),
        # TRM-Att on ARC: the official README's ARC-AGI-1 and -2 commands
        "arc1": dict(
            # README: arch.L_layers=2 arch.H_cycles=3 arch.L_cycles=4 (the paper says n=6, and a
            # model card of the re-trained checkpoints calls the 4 accidental); trm.yaml: mlp_t:
            # False (attention), the rest as for sudoku
            net="att", layers=2, T=3, n=4, hidden=512, heads=8, prefix_len=16, N_sup=16,
            halt_explore=0.1, act_continue=False, separate_nets=False,
            # cfg_pretrain.yaml: global_batch_size, lr, lr_warmup_steps, weight_decay,
            # puzzle_emb_lr, puzzle_emb_weight_decay, ema_rate (README: ema=True)
            batch_size=768, lr=1e-4, warmup=2000, weight_decay=0.1, emb_lr=1e-2,
            emb_weight_decay=0.1, ema=0.999,
            # cfg_pretrain.yaml: epochs 100000 eval_interval 10000 = 518,226 steps of the official
            # sampler (its total_steps formula, tested against the build); README's build:
            # arc1concept-aug-1000, the augmentations are its copies (so no --augment)
            steps=518226, eval_every=51822, num_aug=1000, augment=False,
            # ours: 3 micro-batches of 256, as for maze (916 tokens); each evaluation votes over
            # the whole test split; a log line per 100 steps
            grad_accum=3, eval_limit=0, log_every=100),
        "arc2": dict(
            # README and trm.yaml, as arc1
            net="att", layers=2, T=3, n=4, hidden=512, heads=8, prefix_len=16, N_sup=16,
            halt_explore=0.1, act_continue=False, separate_nets=False,
            # cfg_pretrain.yaml, as arc1
            batch_size=768, lr=1e-4, warmup=2000, weight_decay=0.1, emb_lr=1e-2,
            emb_weight_decay=0.1, ema=0.999,
            # cfg_pretrain.yaml: epochs 100000 eval_interval 10000 = 722,098 steps of the official
            # sampler, as arc1; README's build: arc2concept-aug-1000
            steps=722098, eval_every=72209, num_aug=1000, augment=False,
            # ours, as arc1
            grad_accum=3, eval_limit=0, log_every=100),
        # ---- the small tasks, our own recipe
        "sudoku4": dict(
            # ours: D=64, the MLP-t mixer, one prefix token; the paper's 2-layer net, its halting
            # exploration (trm.yaml) and its single network; less recursion than the paper
            net="mlp", layers=2, T=2, n=3, hidden=64, heads=4, prefix_len=1, N_sup=8,
            halt_explore=0.1, act_continue=False, separate_nets=False,
            # ours: a small batch, a higher lr, less weight decay, a faster EMA
            batch_size=64, lr=3e-3, warmup=100, ema=0.99, weight_decay=0.1, emb_lr=3e-3,
            emb_weight_decay=0.1,
            # ours: the quickest smoke test
            steps=600, eval_every=250, augment=True, grad_accum=1, eval_limit=1000, log_every=50),
        "sudoku6": dict(
            # ours, as sudoku4
            net="mlp", layers=2, T=2, n=3, hidden=64, heads=4, prefix_len=1, N_sup=8,
            halt_explore=0.1, act_continue=False, separate_nets=False,
            batch_size=64, lr=3e-3, warmup=100, ema=0.99, weight_decay=0.1, emb_lr=3e-3,
            emb_weight_decay=0.1,
            # ours: 99.1% in 4m27s on 2 CPU cores (README, Results)
            steps=1200, eval_every=250, augment=True, grad_accum=1, eval_limit=1000, log_every=50),
        "maze-small": dict(
            # ours, as sudoku4
            net="mlp", layers=2, T=2, n=3, hidden=64, heads=4, prefix_len=1, N_sup=8,
            halt_explore=0.1, act_continue=False, separate_nets=False,
            batch_size=64, lr=3e-3, warmup=100, ema=0.99, weight_decay=0.1, emb_lr=3e-3,
            emb_weight_decay=0.1,
            # ours: about 20 min on 2 CPU cores, 96.7% (measured)
            steps=4300, eval_every=250, augment=True, grad_accum=1, eval_limit=1000, log_every=50),
        # Mini-ARC on a CPU: the small tasks' TRM-MLP with fewer augmentations, so that the 149
        # test inputs' copies are voted in seconds
        "arc-mini": dict(
            # ours, as sudoku4
            net="mlp", layers=2, T=2, n=3, hidden=64, heads=4, prefix_len=1, N_sup=8,
            halt_explore=0.1, act_continue=False, separate_nets=False,
            # ours, as sudoku4, with the official ARC puzzle-embedding lr (cfg_pretrain.yaml)
            batch_size=64, lr=3e-3, warmup=100, ema=0.99, weight_decay=0.1, emb_lr=1e-2,
            emb_weight_decay=0.1,
            # ours: 8 copies per task (the augmentations, so no --augment), every evaluation
            # votes over the whole test split
            steps=3000, eval_every=300, num_aug=7, augment=False, grad_accum=1, eval_limit=0,
            log_every=50),
    },
    "hrm": {
        # ---- the papers' recipes
        # HRM (paper Fig. 1: 55.0%): sapientinc/HRM's README command for Sudoku Extreme (1k)
        "sudoku": dict(
            # hrm_v1.yaml: attention (HRM's only mixer), hidden_size, num_heads, H_layers =
            # L_layers = 4, puzzle_emb_ndim = hidden_size (one prefix token), H_cycles, L_cycles,
            # halt_max_steps, halt_exploration_prob
            net="att", layers=4, N=2, T=2, hidden=512, heads=8, prefix_len=1, M_max=16,
            halt_explore=0.1,
            # cfg_pretrain.yaml: global_batch_size, lr_warmup_steps; README: lr=1e-4
            # weight_decay=1.0 puzzle_emb_lr=1e-4 puzzle_emb_weight_decay=1.0; no EMA (HRM's code
            # has none)
            batch_size=768, lr=1e-4, warmup=2000, ema=0, weight_decay=1.0, emb_lr=1e-4,
            emb_weight_decay=1.0,
            # README: epochs=20000 eval_interval=2000 of the 1000 puzzles; its build's --num-aug
            # 1000, as TRM's
            steps=26040, eval_every=2604, augment=True,
            # ours, as TRM's (the batch at once: 12.1 GiB on an H100, docs/reproduce.md)
            grad_accum=1, eval_limit=20000, log_every=100),
        # HRM (paper Fig. 1: 74.5%): sapientinc/HRM's README command for Maze 30x30 Hard (1k)
        "maze": dict(
            # hrm_v1.yaml, as for sudoku
            net="att", layers=4, N=2, T=2, hidden=512, heads=8, prefix_len=1, M_max=16,
            halt_explore=0.1,
            # cfg_pretrain.yaml and README, as for sudoku
            batch_size=768, lr=1e-4, warmup=2000, ema=0, weight_decay=1.0, emb_lr=1e-4,
            emb_weight_decay=1.0,
            # README: epochs=20000 eval_interval=2000; no augmentation (its build_maze_dataset.py
            # without --aug)
            steps=26040, eval_every=2604, augment=False,
            # ours, as TRM's maze
            grad_accum=3, eval_limit=1000, log_every=100),
        # HRM's ARC config is the same recipe as TRM's (sapientinc/HRM's cfg_pretrain.yaml),
        # without an EMA
        "arc1": dict(
            # hrm_v1.yaml, as for sudoku
            net="att", layers=4, N=2, T=2, hidden=512, heads=8, prefix_len=1, M_max=16,
            halt_explore=0.1,
            # cfg_pretrain.yaml: global_batch_size, lr, lr_warmup_steps, weight_decay,
            # puzzle_emb_lr, puzzle_emb_weight_decay; no EMA
            batch_size=768, lr=1e-4, warmup=2000, weight_decay=0.1, emb_lr=1e-2,
            emb_weight_decay=0.1, ema=0,
            # cfg_pretrain.yaml: epochs 100000 eval_interval 10000, on the TRM builder's data, as
            # TRM's arc1
            steps=518226, eval_every=51822, num_aug=1000, augment=False,
            # ours, as TRM's arc1
            grad_accum=3, eval_limit=0, log_every=100),
        "arc2": dict(
            # hrm_v1.yaml and cfg_pretrain.yaml, as arc1
            net="att", layers=4, N=2, T=2, hidden=512, heads=8, prefix_len=1, M_max=16,
            halt_explore=0.1,
            batch_size=768, lr=1e-4, warmup=2000, weight_decay=0.1, emb_lr=1e-2,
            emb_weight_decay=0.1, ema=0,
            # cfg_pretrain.yaml: epochs 100000 eval_interval 10000, as TRM's arc2
            steps=722098, eval_every=72209, num_aug=1000, augment=False,
            # ours, as TRM's arc1
            grad_accum=3, eval_limit=0, log_every=100),
        # ---- the small tasks, our own recipe: TRM's, with two 2-layer modules
        "sudoku4": dict(
            # ours: TRM's sudoku4 with two 2-layer modules, hrm_v1.yaml's N=T=2 and
            # halt_exploration_prob, M_max 8 as TRM's N_sup
            net="mlp", layers=2, N=2, T=2, hidden=64, heads=4, prefix_len=1, M_max=8,
            halt_explore=0.1,
            # ours, as TRM's sudoku4
            batch_size=64, lr=3e-3, warmup=100, ema=0.99, weight_decay=0.1, emb_lr=3e-3,
            emb_weight_decay=0.1,
            steps=600, eval_every=250, augment=True, grad_accum=1, eval_limit=1000, log_every=50),
        "sudoku6": dict(
            # ours, as sudoku4
            net="mlp", layers=2, N=2, T=2, hidden=64, heads=4, prefix_len=1, M_max=8,
            halt_explore=0.1,
            # measured: batch 64 stalled at 82-84% (lr 3e-3) or 73% (lr 1e-3); 128 passed 90%
            batch_size=128, lr=3e-3, warmup=100, ema=0.99, weight_decay=0.1, emb_lr=3e-3,
            emb_weight_decay=0.1,
            # ours, as TRM's sudoku6
            steps=1200, eval_every=250, augment=True, grad_accum=1, eval_limit=1000, log_every=50),
        "maze-small": dict(
            # ours, as sudoku4
            net="mlp", layers=2, N=2, T=2, hidden=64, heads=4, prefix_len=1, M_max=8,
            halt_explore=0.1,
            batch_size=64, lr=3e-3, warmup=100, ema=0.99, weight_decay=0.1, emb_lr=3e-3,
            emb_weight_decay=0.1,
            # ours, as TRM's maze-small
            steps=4300, eval_every=250, augment=True, grad_accum=1, eval_limit=1000, log_every=50),
        "arc-mini": dict(
            # ours, as sudoku4
            net="mlp", layers=2, N=2, T=2, hidden=64, heads=4, prefix_len=1, M_max=8,
            halt_explore=0.1,
            # ours, as TRM's arc-mini
            batch_size=64, lr=3e-3, warmup=100, ema=0.99, weight_decay=0.1, emb_lr=1e-2,
            emb_weight_decay=0.1,
            steps=3000, eval_every=300, num_aug=7, augment=False, grad_accum=1, eval_limit=0,
            log_every=50),
    },
}
