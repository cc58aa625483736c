"""Verdicts: the decision rules that turn criteria with intervals into intact, wrapped,
removed, suppressed or inconclusive, and their thresholds."""
