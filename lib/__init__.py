"""The machinery off the reading path (train.py, trm.py, data.py; hrm.py beside trm.py): flags
(config) and the presets they start from (presets), saving and resuming a run (checkpoint), the
settings of a CPU run's process (cpu), evaluation (evaluate), test-time compute with --eval-only
(scaling), the optimisers (optim), torchrun (parallel), official checkpoints
(official), --bench (bench), logs and plots (report), and the TRM paper's Table 1 in miniature,
python -m lib.ablations (ablations)."""
