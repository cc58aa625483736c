"""Task generation speed against what the trainer consumes.

Prints strings/s and tokens/s of the generator (batches built exactly as training
builds them) for several text lengths, and the trainer's consumption measured on the
same machine with the CPU preset's model, so the ratio says whether data can starve
training. Run: python benchmarks/bench_data.py
"""

from __future__ import annotations

import time

import numpy as np

from wrapcli.tasks.sequences import batch_for_step, seq_len
from wrapcli.tasks.spec import TaskSpec, parse_components, parse_prior


def generator_rate(spec, batch_size=128, seconds=3.0):
    n, step, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        batch_for_step(spec, step, batch_size)
        n += batch_size
        step += 1
    dt = time.perf_counter() - t0
    return n / dt, n * seq_len(spec.text_len) / dt


def trainer_rate(text_len, steps=8, batch_size=128):
    import torch

    from wrapcli.models.build import ModelShape, build_config, build_model
    from wrapcli.tasks import vocab
    from wrapcli.training.batches import loss_on
    from wrapcli.training.loop import TrainConfig, make_optimizer

    spec = TaskSpec(components=parse_components("count"), prior=parse_prior("a=0.9,b=0.1"), text_len=text_len)
    model = build_model(build_config(ModelShape("gpt2", 4, 4, 128), vocab.VOCAB_SIZE, seq_len(text_len)), 0)
    opt = make_optimizer(model, TrainConfig(steps=1, batch_size=batch_size, lr=1e-3))
    batches = [torch.as_tensor(batch_for_step(spec, i, batch_size).tokens) for i in range(steps + 2)]
    for i, x in enumerate(batches):
        if i == 2:
            t0 = time.perf_counter()
        loss = loss_on(model, x, "answer")
        opt.zero_grad()
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    return steps * batch_size / dt, steps * batch_size * seq_len(text_len) / dt


def main() -> None:
    print(f"{'task':<22}{'text_len':>9}{'gen strings/s':>15}{'gen tokens/s':>14}{'trainer tok/s':>15}{'ratio':>8}")
    for text_len in (48, 64, 250):
        trainer = trainer_rate(text_len)[1]
        for task, spurious in (("count (prior)", 0.0), ("count:b spurious 0.8", 0.8), ("count,index,token", 0.0)):
            name = task.split(" ")[0]
            spec = TaskSpec(
                components=parse_components(name), prior=parse_prior("a=0.9,b=0.1"), text_len=text_len, spurious=spurious
            )
            s, t = generator_rate(spec)
            print(f"{task:<22}{text_len:>9}{s:>15,.0f}{t:>14,.0f}{trainer:>15,.0f}{t / trainer:>7.1f}x")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
