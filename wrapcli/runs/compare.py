"""`wrapcli compare`: stream the weight diff, read and check the evidence reports, load
one model at a time beside the base for behaviour, CKA and KL, and put the verdicts
together (wrapcli/analyses/audit.py measures, wrapcli/verdicts/rules.py decides) into the report's
results (schema COMPARE)."""

from __future__ import annotations

from wrapcli.analyses.audit import cka_by_layer, evidence_task, kl_by_position, verdicts_by_checkpoint
from wrapcli.core.errors import UsageError, WrapError
from wrapcli.runs.evidence import load_reports
from wrapcli.textdata.sources import is_record_file
from wrapcli.verdicts.rules import Thresholds


def compare(*, paths, tasks=(), reports=(), th: Thresholds = Thresholds(), n=512, dtype="float32",
            device="cpu", placement: dict | None = None, views=()) -> dict:
    """The audit's results for checkpoints ``paths`` (the first is the base). Weights are
    streamed tensor by tensor; for behaviour, CKA and KL one model at a time is in memory
    beside the base's kept activations (float16 features, float16 answer log-probs).
    With ``placement`` (--device-map) each model is dispatched by accelerate. ``views``:
    ``FREE=MC`` pairs of JSONL files, the free-form and multiple-choice views of one
    capability (each also compared as a task of its own)."""
    from wrapcli.core.files import sha256
    from wrapcli.models import checkpoint
    from wrapcli.models.adapters import layer_features

    if len(paths) < 2:
        raise WrapError("compare needs at least two checkpoints (the first is the base)")
    compiled = [checkpoint.is_compiled(c) for c in paths]
    if any(compiled):
        return compare_compiled(paths, tasks, reports, th, n, compiled, dtype=dtype, placement=placement, views=views)
    if dtype not in ("float32", "bfloat16", "float16"):
        raise UsageError(f"unknown dtype {dtype!r} (float32, bfloat16, float16)")
    from wrapcli.analyses.weightdiff import compare_weights

    pairs = parse_views(views)
    tasks = [*tasks, *[t for pair in pairs.items() for t in pair if t not in tasks]]
    names = [str(p) for p in paths]
    weights = [compare_weights(paths[0], p, device=device) for p in paths[1:]]  # streams; refuses mismatches first
    shas = {name: sha256(path) for name, path in zip(names, paths)}
    evidence_by = load_reports(reports, shas)  # refuse bad evidence before the forward passes
    base = checkpoint.load(paths[0], dtype=dtype, device=device, placement=placement)
    canon, task_views = capabilities(tasks, paths[0], base, n)
    for rep in (r for reps in evidence_by.values() for r in reps):
        evidence_task(rep, canon)
    behaviour = {key: {names[0]: view.score(base.model, device)} for key, view in task_views}
    correct = {key: {names[0]: view.last_correct} for key, view in task_views if view.records is not None}
    base_lp = {key: view.log_probs(base.model, device) for key, view in task_views if view.records is not None}
    base_features = layer_features(base.model, task_views[0][1].chunks(), task_views[0][1].pick, device) if task_views else None
    depth, representations = {key: {} for key in base_lp}, {}
    for name, path in zip(names[1:], paths[1:]):
        ck = checkpoint.load(path, dtype=dtype, device=device, placement=placement)
        if ck.vocab != base.vocab:
            raise WrapError(f"{names[0]} and {name} have different vocabularies")
        for key, view in task_views:
            behaviour[key][name] = view.score(ck.model, device)
            if key in correct:
                correct[key][name] = view.last_correct
            if key in base_lp:
                depth[key][name] = kl_by_position(base_lp[key], view.log_probs(ck.model, device))
        if base_features is not None:
            other = layer_features(ck.model, task_views[0][1].chunks(), task_views[0][1].pick, device)
            representations[name] = cka_by_layer(base_features, other)
        del ck
    check_views(pairs, behaviour, names[0])
    attacks = attack_criteria(names, canon, evidence_by, correct, dict(task_views), th)
    verdict_by = verdicts_by_checkpoint(names, canon, evidence_by, behaviour, th, pairs, attacks)
    return {
        "checkpoints": [{"path": n_, "sha256": shas[n_]} for n_ in names],
        "base": names[0],
        "thresholds": th.to_dict(),
        "weights": weights,
        "behaviour": behaviour,
        "depth": depth,
        "representations": representations,
        "evidence": {k: [r["path"] for r in v] for k, v in evidence_by.items()},
        "verdicts": verdict_by,
        "views": [{"free_form": free, "multiple_choice": mc} for free, mc in pairs.items()],
        **({"placement": {**placement, "modules": checkpoint.placed_on(base.model)}} if placement else {}),
        "device": device,
    }


def capabilities(tasks, base_path, base, n: int) -> tuple[dict, list]:
    """Each --task's key (its component, or its JSONL path with the file's sha256) and its
    fixed examples (a TaskView), refusing a task given twice."""
    from wrapcli.core.files import sha256

    canon, task_views = {}, []
    for task in tasks:
        key, info = _canonical(task, base)
        if key in canon:
            raise UsageError(f"--task {task} is given twice")
        if info.get("file"):
            info["sha256"] = sha256(task)
        canon[key] = info
        task_views.append((key, TaskView(task, base_path, base, n)))
    return canon, task_views


def check_views(pairs: dict, behaviour: dict, base: str) -> None:
    """A --view pairs prompt/answer records (first) with multiple-choice ones (second)."""
    for free, mc in pairs.items():
        kinds = (behaviour[free][base]["metric"], behaviour[mc][base]["metric"])
        if kinds != ("exact_match", "choice_accuracy"):
            raise UsageError(f"--view {free}={mc}: needs prompt/answer records first and multiple-choice records "
                             f"second, got {kinds[0].replace('_', ' ')} and {kinds[1].replace('_', ' ')}")


def compare_compiled(paths, tasks, reports, th, n, compiled: list[bool], **given) -> dict:
    """Compiled (Tracr) counters compared, after what they cannot take is refused."""
    from wrapcli.runs import compiled as compiled_runs

    if not all(compiled):
        raise UsageError("compare takes compiled (Tracr) checkpoints only beside other compiled ones")
    if any(is_record_file(t) for t in tasks):
        raise UsageError("a compiled counter is compared on --task count:X, not on JSONL records")
    if given["dtype"] != "float32":
        raise UsageError("compiled (Tracr) models are compared in fp32")
    if given["placement"] is not None:
        raise UsageError("--device-map is for Hugging Face directories, not compiled (Tracr) models")
    if given["views"]:
        raise UsageError("--view pairs JSONL records; a compiled counter is compared on --task count:X")
    return compiled_runs.compare(paths=paths, tasks=list(tasks), reports=list(reports), th=th, n=n)


def attack_criteria(names, canon, evidence_by, correct, views, th) -> dict:
    """Each checkpoint's attack criteria per task, from its eval reports: accuracy under the
    attack on the records the base answers against a floor (the same attack's accuracy on
    the records the base gets wrong, or chance for multiple choice), judged as relearning
    is (wrapcli/analyses/relearning.py), Bonferroni over the attack's settings and over the
    attack reports given for one checkpoint and task."""
    from wrapcli.analyses.relearning import criterion
    from wrapcli.verdicts import rules

    out: dict = {}
    for name in names[1:]:
        reps = [(evidence_task(rep, canon), rep) for rep in evidence_by[name]
                if rep["schema"] in ("wrapcli.eval", "wrapcli.ablate")]
        reps += [(lens_task(rep, canon), rep) for rep in evidence_by[name] if rep["results"].get("lens")]
        for key, rep in reps:
            family = sum(1 for k, _ in reps if k == key)
            base, tuned, view = correct[key][names[0]], correct[key][name], views[key]
            what, labels, settings, eligible = attack_settings(rep)
            if any(len(s) != len(base) for s in settings):
                raise WrapError(f"{rep['path']}: scored {len(settings[0])} records, but {key} holds {len(base)}")
            chance = [1 / len(c.rows) for c in view.records.choices] if view.records.choices is not None else None
            r = criterion(lrs=[float(i) for i in range(len(settings))], revived=[[float(x) for x in s] for s in settings],
                          controls=None, eligible=eligible or [True] * len(base), reference_correct=base, chance=chance,
                          start=tuned, margin=th.attack_margin, attack=what, labels=labels, family=family)
            out.setdefault(name, {}).setdefault(key, []).append(rules.attack(r, what, th, rep["path"]))
    return out


def lens_task(rep: dict, canon: dict) -> str:
    """The JSONL task a probe report's logit lens read (its records, by content)."""
    same = [t for t, info in canon.items() if info.get("sha256") and info["sha256"] in rep["input_shas"]]
    if not same:
        raise WrapError(f"{rep['path']}: its logit lens read {rep['results']['lens']['records']}, which matches none of "
                        "compare's JSONL --task files by content")
    return same[0]


def attack_settings(rep: dict) -> tuple[str, list[str], list[list[bool]], list[bool] | None]:
    """An evidence report's attack: its name, a label per setting, each setting's
    per-record correctness (quantized: the model as rounded; --shots: each K > 0; the
    logit lens: each residual-stream point; ablate: the written model) and which records
    count (ablate: the half its block was not chosen on; None: all)."""
    r = rep["results"]
    if rep["schema"] == "wrapcli.probe":
        rows = r["lens"]["model"]
        return "the logit lens", [f"point {row['hook']}" for row in rows], [row["correct"] for row in rows], None
    if rep["schema"] == "wrapcli.ablate":
        held = set(r["report_records"])
        return (f"directional ablation ({r['hook']})", [f"the direction of {r['hook']}"], [r["correct"]],
                [i in held for i in range(len(r["correct"]))])
    q = r.get("attack")
    rounded = f"quantization ({q['scheme']} {q['bits']}-bit)" if q else None
    rows = [row for row in (r.get("shots") or {}).get("per_k", []) if row["k"] > 0]
    labels, settings = ([rounded], [r["correct"]]) if q else ([], [])
    labels += [f"{row['k']} in-context examples" + (" on the quantized model" if q else "") for row in rows]
    settings += [row["correct"] for row in rows]
    what = " and ".join(w for w in (rounded, "in-context examples" if rows else None) if w)
    return what, labels, settings, None


def parse_views(views) -> dict[str, str]:
    """``--view FREE.jsonl=MC.jsonl`` pairs as {free-form file: multiple-choice file}."""
    pairs: dict[str, str] = {}
    for v in views:
        free, eq, mc = v.partition("=")
        if not eq or not is_record_file(free) or not is_record_file(mc) or free == mc:
            raise UsageError(f"--view {v}: expected FREE.jsonl=MC.jsonl, the free-form and the multiple-choice "
                             "records of one capability")
        if free in pairs:
            raise UsageError(f"--view {v}: {free} is given a view twice")
        pairs[free] = mc
    return pairs


def _canonical(task: str, ck) -> tuple[str, dict]:
    """The key evidence is matched on: the component (count:a) or the JSONL path."""
    if is_record_file(task):
        return task, {"file": True}
    from wrapcli.tasks.checks import single_component, task_for

    return str(single_component(task_for(ck, task), "compare", task)), {}


class TaskView:
    """One capability's examples, fixed from the base checkpoint: a built-in task's natural
    evaluation set, or a prompt/answer JSONL file tokenized by the base's tokenizer."""

    def __init__(self, task: str, base_path, base, n: int):
        self.records = None
        if is_record_file(task):
            from wrapcli.models.adapters import last_positions
            from wrapcli.textdata.userdata import text_data

            self.records = text_data(task, base_path, base.model, 0, kinds=("prompt", "choice"))
            self.pick = last_positions(1)
            return
        from wrapcli.tasks.checks import task_for
        from wrapcli.tasks.evaluation import EVAL_SEED
        from wrapcli.tasks.sequences import answer_pos, eval_batch

        self.spec = task_for(base, task).replace(seed=EVAL_SEED)
        from wrapcli.core.runtime import check_memory, shape_of
        from wrapcli.tasks.evaluation import check_eval_memory

        check_eval_memory("--eval-size", n, self.spec)
        layers, width, _, _ = shape_of(base.model.config)
        check_memory("--eval-size", n, 2 * n * (layers + 1) * width * 2, "the kept activations of two models")
        self.comp = self.spec.eval_components()[0]
        self.n = n
        tokens = eval_batch(self.spec, self.comp, n, None).tokens
        self.tokens = tokens[:, : answer_pos(tokens) + 1]  # prompts: up to <ans>
        self.pick = lambda h, mask: h[:, -1]

    def score(self, model, device) -> dict:
        """Accuracy with its count and interval (for JSONL the record kind's metric:
        exact match, or choice accuracy with chance as the baseline)."""
        if self.records is not None:
            from wrapcli.textdata.textscore import score_records, summarize

            rows = score_records(model, self.records, device)
            self.last_correct = [bool(x["correct"]) for x in rows]  # what an attack's criterion is held against
            r = summarize(self.records, rows)
            out = {"accuracy": r["accuracy"], "n": r["n"], "ci95": r["ci95"], "metric": r["metric"],
                   "correct": self.last_correct}
            return out if r["chance"] is None else {**out, "majority_baseline": r["chance"]}
        from wrapcli.tasks.evaluation import score
        from wrapcli.tasks.sequences import eval_batch

        r = score(model, eval_batch(self.spec.fixed(self.comp), self.comp, self.n, None), device, keep_correct=True)
        return {"accuracy": r["accuracy"], "n": r["n"], "ci95": r["ci95"], "metric": "accuracy",
                "majority_baseline": r["majority_baseline"], "correct": r["correct"]}

    def chunks(self, size: int = 32):
        """``(input_ids, attention_mask)`` batches for the CKA features."""
        if self.records is None:
            from wrapcli.models.adapters import token_chunks

            yield from token_chunks(self.tokens)
            return
        rows = self.records.train_rows  # a multiple-choice record by its correct choice
        for i in range(0, len(rows), size):
            b = self.records.collate(rows[i:i + size], "cpu")
            yield b["input_ids"], b["attention_mask"]

    def log_probs(self, model, device, batch_size: int = 16):
        """Next-token log-probabilities (float16, (N, vocab)) at every answer token of the
        records (the correct choice's, for multiple choice), and each one's place in its
        answer (N,)."""
        import torch

        from wrapcli.textdata.userdata import answer_logits

        lps, places = [], []
        rows = self.records.train_rows
        with torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                logits, _, _, place = answer_logits(model, self.records.collate(rows[start:start + batch_size], device))
                lps.append(torch.log_softmax(logits.float(), -1).half().cpu())
                places.append(place.cpu())
        return torch.cat(lps), torch.cat(places)
