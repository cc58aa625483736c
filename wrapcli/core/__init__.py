"""The ground floor: errors, atomic files, where and how a run executes (device, threads,
precision, memory, torchrun processes), numeric kernels and interval statistics."""
