"""The orchestration layer: what each command runs. A run loads and checks its inputs,
calls the analyses (wrapcli/analyses/: pure functions over models and data) and the
compiled models' training (wrapcli/compiled/), writes checkpoints and assembles the
report's results. Imports run one way, from cli and commands down to core
(tests/unit/test_layers.py)."""
