"""Compiled (Tracr) models: the model that runs a compiled RASP program in torch
(model.py), compiling a program into one (compiling.py, the compile extra), and their
fine-tuning, pruning, probing and revival (training.py)."""
