"""Every rich table the commands print on stderr, built from a report's results (so a
table shows exactly what the JSON holds). Commands print them; nothing else imports this."""

from __future__ import annotations


def accuracy_table(results: dict, title: str):
    """A rich table of ``{component: {setting: score}}`` (evaluation.evaluate's shape):
    each cell is the accuracy with the majority baseline of that set in brackets."""
    from rich.table import Table

    order = ["natural", "C_Te=0", "C_Te=1"]
    settings = sorted({s for rows in results.values() for s in rows}, key=order.index)
    table = Table(title=title)
    table.add_column("task")
    for s in settings:
        table.add_column(f"{s} (majority)", justify="right")
    table.add_column("n", justify="right")
    for comp, rows in results.items():
        cells = [
            f"{rows[s]['accuracy']:.1%} ({rows[s]['majority_baseline']:.0%})" if s in rows else "-"
            for s in settings
        ]
        table.add_row(comp, *cells, str(next(iter(rows.values()))["n"]))
    return table


def prune_series(result: dict) -> dict[str, list[float]]:
    """One accuracy series per task and setting, over the swept K."""
    series: dict[str, list[float]] = {}
    for row in result["sweep"]:
        for task, rows in row["results"].items():
            if "token_accuracy" in rows:
                series.setdefault(task, []).append(rows["token_accuracy"])
                continue
            for setting, score in rows.items():
                name = task if setting == "natural" else f"{task} {setting}"
                series.setdefault(name, []).append(score["accuracy"])
    return series


def sweep_table(result: dict):
    from rich.table import Table

    series = prune_series(result)
    table = Table(title=f"{result['checkpoint']}: accuracy after pruning K {result['unit']}s by weight x gradient")
    table.add_column("K", justify="right")
    for name in series:
        table.add_column(name, justify="right")
    for i, row in enumerate(result["sweep"]):
        table.add_row(str(row["k"]), *[f"{v[i]:.1%}" for v in series.values()])
    return table


def layer_table(result: dict):
    from rich.table import Table

    table = Table(title=f"{result['checkpoint']}: linear probes for {result['target']} "
                        f"(held-out accuracy, 95% interval)")
    ref = "reference" in result["layers"][0]
    for col in ["layer", "probe", "majority", f"random init (best of {len(result['random_init_seeds'])})",
                "margin over the higher", *(["reference"] if ref else [])]:
        table.add_column(col, justify="right")
    for row in result["layers"]:
        m = row["margin"]
        table.add_row(row["hook"], _pct(row), f"{row['majority_baseline']:.1%}", _pct(row["random_init"]),
                      f"{m['value']:+.1%} [{m['ci95'][0]:+.1%}, {m['ci95'][1]:+.1%}]",
                      *([_pct(row["reference"])] if ref else []))
    return table


def lens_table(lens: dict):
    """The logit lens per residual-stream point: the model's accuracy (and the
    reference's), with the answer's median rank for free-form records."""
    from rich.table import Table

    table = Table(title=f"logit lens on {lens['records']} (answered at each point, 95% interval)")
    ref = lens.get("reference")
    for col in ["point", "model", *(["median rank"] if not lens["multiple_choice"] else []), *(["reference"] if ref else [])]:
        table.add_column(col, justify="right")
    for i, row in enumerate(lens["model"]):
        rank = [f"{row['median_rank']:g}"] if not lens["multiple_choice"] else []
        table.add_row(row["hook"], _pct(row), *rank, *([_pct(ref[i])] if ref else []))
    return table


def _pct(score: dict) -> str:
    lo, hi = score["ci95"]
    return f"{score['accuracy']:.1%} [{lo:.0%}, {hi:.0%}]"


def attention_table(rows: list[dict], title: str = "attention from <ans> onto each letter (share)"):
    """Mean attention share per layer and head onto each token the rows name (a, b, c;
    BOS too for compiled counters)."""
    from rich.table import Table

    tokens = [t for t in ("BOS", "a", "b", "c") if t in rows[0]]
    table = Table(title=title)
    for col in ("layer", "head", *tokens):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["layer"]), str(r["head"]), *(f"{r[t]:.2f}" for t in tokens))
    return table


def revival_table(steps: list[int], models: list[dict], threshold: float):
    """Rich table: mean ± std accuracy per model at each evaluated step."""
    from rich.table import Table

    table = Table(title=f"reverse fine-tuning: accuracy by step (threshold {threshold:.3f})")
    table.add_column("model")
    for s in steps:
        table.add_column(str(s), justify="right")
    table.add_column("steps to thr. per seed", justify="right")
    for m in models:
        acc = m["accuracy"]
        cells = [f"{mu:.2f}±{sd:.2f}" for mu, sd in zip(acc["mean"], acc["std"])]
        reached = ", ".join("never" if r is None else f"{r:.0f}" for r in m["steps_to_threshold"]["per_seed"])
        table.add_row(m["name"], *cells, reached)
    return table


def describe_scores(s: dict) -> str:
    """A file's scores in one line: the headline metric first."""
    from wrapcli.textdata.textscore import METRICS

    head = (
        f"{s['n_records']} records: {s['metric'].replace('_', ' ')} {s['accuracy']:.1%} [{s['ci95'][0]:.1%}, {s['ci95'][1]:.1%}]"
    )
    if s["metric"] == METRICS["choice"]:
        return (
            head + f", length-normalised {s['choice_accuracy_norm']:.1%}, chance {s['chance']:.1%}, answer loss {s['loss']:.3f}"
        )
    return head + f", token accuracy {s['token_accuracy']:.1%}, answer loss {s['loss']:.3f}"
