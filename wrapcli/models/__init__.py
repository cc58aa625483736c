"""Models: building the built-in configs, the per-architecture adapter (where the residual
stream, MLP units, heads and rows live) and checkpoints (files, Hugging Face directories,
integrity checks, lineage)."""
