"""The orchestration layer: what each command runs. A run loads and checks its inputs,
calls the analyses (pure functions over models and data: pruning, probing, revival,
weightdiff, verdicts, compiled_training), writes checkpoints and assembles the report's
results. Imports run one way: commands -> runs -> analyses -> models / tasks / files."""
