"""The machinery off the reading path (train.py, trm.py, data.py; hrm.py beside trm.py): flags and
presets (config), saving and resuming a run (checkpoint), evaluation (evaluate), test-time compute
with --eval-only (scaling), the optimisers (optim), torchrun (parallel), official checkpoints
(official), --bench (bench), logs and plots (report), and the TRM paper's Table 1 in miniature,
python -m lib.ablations (ablations)."""
