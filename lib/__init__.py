"""The machinery around the reading path (train.py, trm.py, hrm.py, data.py): flags and presets
(config), evaluation and test-time scaling (evaluate), the optimisers (optim), torchrun
(parallel), official checkpoints (official), --bench (bench), logs and plots (report)."""
