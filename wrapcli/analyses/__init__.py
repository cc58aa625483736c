"""The analyses: pure computations over a model already loaded (pruning, probing,
revival curves, the relearning criterion, the weight diff, the audit's measures).
An analysis imports no other analysis, no run and no command, and loads no checkpoint
(tests/unit/test_layers.py)."""
