"""Tasks: the PCFG grammar, task specs and their sequences, conjugate prompts, the synthetic
facts world, and evaluation of a model on a built-in task."""
