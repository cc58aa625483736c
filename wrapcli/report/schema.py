"""The report schema: every key of the envelope and of each command's ``results``, its
type and its meaning, in one place (lm-evaluation-harness keeps a written schema for its
results; this one is also checked). ``validate`` lists every problem of a report at once;
``markdown`` writes docs/reports.md, and a test fails when that file is stale.

Versions: ``schema_version`` is the envelope's, ``results_version`` the command's own.
Bump a version when a key changes meaning or type; adding a key is a change too.

Types: ``str``, ``int``, ``float`` (an int is a float too), ``bool``, ``null``, joined
with ``|``; ``Obj`` (fixed keys), ``List``, ``Map`` (keys are data: task names, answers,
checkpoint paths), ``ANY`` (documented where it is made).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ENVELOPE_VERSION = 2
RESULTS_VERSIONS = {"train": 3, "finetune": 3, "eval": 4, "probe": 2, "prune": 3, "revive": 3, "compare": 3,
                    "quantize": 1, "ablate": 1}


@dataclass(frozen=True)
class F:
    type: object  # a type string, Obj, List, Map or ANY
    doc: str
    optional: bool = False  # the key may be absent


@dataclass(frozen=True)
class Obj:
    fields: dict
    open: bool = False  # keys outside ``fields`` are allowed (metadata newer wrapcli versions may add)


@dataclass(frozen=True)
class List:
    item: object


@dataclass(frozen=True)
class Map:
    value: object
    key: str  # what the keys are


ANY = "any"
INTERVAL = List("float")

# -- shared pieces ---------------------------------------------------------------------
SCORE = {
    "accuracy": F("float", "share of examples answered right"),
    "n": F("int", "examples scored"),
    "ci95": F(INTERVAL, "95% Wilson interval of accuracy, [low, high]"),
}
EVAL_SCORE = Obj({
    **SCORE,
    "majority_baseline": F("float", "accuracy of always giving this set's most common answer"),
    "per_answer": F(Map(Obj(SCORE), "expected answer token"), "accuracy on the examples with each expected answer"),
})
TASK_EVAL = Map(Map(EVAL_SCORE, "setting: natural, C_Te=0 (spurious relation absent) or C_Te=1 (present)"),
                "task component, e.g. count:a")
TASK_SPEC = Obj({
    "components": F(List("str"), "task components, e.g. ['count:b']"),
    "prior": F(Map("float", "operand"), "operand prior for components without a fixed operand"),
    "window": F("int", "O': text positions a counting task looks at"),
    "k": F("int", "indexing: the k-th occurrence"),
    "offset": F("int", "token task: positions before <eot>"),
    "text_len": F("int", "terminals per text"),
    "spurious": F("float", "C_Tr: fraction of training strings with the spurious relation"),
    "spurious_offset": F("int", "q: count(b) = count(a) + q where the relation holds"),
    "spurious_operands": F(List("str"), "the operands the relation ties"),
    "seed": F("int", "data seed"),
})
TRAIN_CFG = Obj({
    "steps": F("int", "optimizer steps"),
    "batch_size": F("int", "sequences per step (global under torchrun)"),
    "lr": F("float", "peak learning rate"),
    "loss": F("str", "full (next-token) or answer (answer token only)"),
    "warmup_frac": F("float", "share of steps with linear warm-up"),
    "min_lr_ratio": F("float", "cosine floor as a share of lr"),
    "weight_decay": F("float", "AdamW weight decay (2-D weights)"),
    "beta2": F("float", "AdamW beta2"),
    "grad_clip": F("float", "gradient-norm clip"),
    "eval_every": F("int", "steps between logged evaluations"),
    "eval_size": F("int", "examples per logged evaluation"),
    "stream": F("int", "training-stream id of the data"),
    "mix": F("float", "share of steps drawn from the mixed-in pretraining task"),
    "precision": F("str", "resolved precision: fp32 or bf16"),
    "optimizer": F("str", "compiled models: sgd (with momentum); absent = AdamW", optional=True),
    "momentum": F("float", "compiled models: SGD momentum", optional=True),
})
LOG = List(Obj({
    "step": F("int", "optimizer steps done (0 = before the first update)"),
    "loss": F("float|null", "training loss at this step (null at step 0)"),
    "lr": F("float", "learning rate of this step"),
    "accuracy": F(Map("float", "task, or 'task C_Te=0/1'"), "accuracy on the fixed evaluation sets", optional=True),
    "accuracy_n": F("int", "examples behind each accuracy", optional=True),
    "accuracy_ci95": F(Map(INTERVAL, "as accuracy"), "95% Wilson interval of each accuracy", optional=True),
    "tokens_per_s": F("float", "training throughput so far", optional=True),
}))
PARENT = Obj({"path": F("str", "parent checkpoint"), "sha256": F("str", "its sha256")})
TEXT_SCORE = Obj({
    "metric": F("str", "the headline metric of the record kind: exact_match (prompt/answer), choice_accuracy "
                       "(multiple choice) or token_accuracy (text)"),
    "accuracy": F("float", "that metric's value"),
    "n": F("int", "what it counts: records (tokens for text records)"),
    "ci95": F(INTERVAL, "95% Wilson interval of accuracy"),
    "chance": F("float|null", "multiple choice: the mean of 1/k over the records (what guessing gets); else null"),
    "loss": F("float", "mean cross-entropy per scored token (the correct choice's tokens, for multiple choice)"),
    "token_accuracy": F("float", "share of scored tokens predicted exactly (teacher-forced argmax)"),
    "token_accuracy_ci95": F(INTERVAL, "95% Wilson interval over tokens (optimistic: tokens of a record are not independent)"),
    "exact_match": F("float", "prompt/answer and text: share of records whose every scored token is right", optional=True),
    "exact_match_ci95": F(INTERVAL, "95% Wilson interval over records", optional=True),
    "choice_accuracy": F("float", "multiple choice: share of records whose correct choice has the highest summed "
                                  "log-likelihood (lm-evaluation-harness acc)", optional=True),
    "choice_accuracy_ci95": F(INTERVAL, "95% Wilson interval over records", optional=True),
    "choice_accuracy_norm": F("float", "the same with each log-likelihood divided by the choice's length in "
                                       "characters (lm-evaluation-harness acc_norm)", optional=True),
    "choice_accuracy_norm_ci95": F(INTERVAL, "95% Wilson interval over records", optional=True),
    "n_records": F("int", "records scored"),
    "n_scored_tokens": F("int", "tokens scored"),
})

# -- envelope --------------------------------------------------------------------------
ENVELOPE = Obj({
    "schema": F("str", "which report: wrapcli.COMMAND"),
    "schema_version": F("int", "version of this envelope"),
    "results_version": F("int", "version of the command's results"),
    "wrapcli_version": F("str", "package version that wrote it"),
    "created": F("str", "UTC time, ISO 8601"),
    "command": F(List("str"), "the command line"),
    "inputs": F(List(Obj({"path": F("str", "file or directory read"), "sha256": F("str", "its content hash")})),
                "every file read; the first is the checkpoint the results are about"),
    "seed": F("int|null", "the seed that makes the results reproducible"),
    "device": F("str", "where it ran: cpu, cuda, cuda:N"),
    "precision": F("str|null", "resolved numeric precision of the forward passes: fp32, bf16, float32 ..."),
    "environment": F(Obj({
        "python": F("str", "Python version"),
        "torch": F("str", "torch version"),
        "transformers": F("str", "transformers version"),
        "numpy": F("str", "numpy version"),
        "platform": F("str", "operating system and machine"),
        "cpu": F("str", "CPU model name"),
        "cpu_flags": F(List("str"), "CPU features that select different matrix kernels (avx2, avx512f, amx_bf16 ...)"),
        "torch_threads": F("int", "intra-op threads: results can differ in the last bits between thread counts"),
        "device_name": F("str", "the GPU's or CPU's name"),
        "git_commit": F("str|null", "HEAD of the wrapcli checkout (-dirty if changed); null when installed"),
    }), "what computed the numbers"),
    "results": F(ANY, "the command's results, below"),
})

# -- results per command ---------------------------------------------------------------
RUN = {  # what every training run reports
    "preset": F("str", "the --preset the unset options came from", optional=True),
    "wall_s": F("float", "wall-clock seconds of the run"),
    "train": F(TRAIN_CFG, "resolved training settings"),
    "device": F("str", "device"),
    "log": F(LOG, "one entry per evaluation (and per loss log)"),
}
ON_RECORDS = {  # what train and finetune report when they train on user records (--data)
    "data": F(Obj({"path": F("str", "training JSONL"), "sha256": F("str", "its hash"), "records": F("int", "records")}),
              "with --data: the training records", optional=True),
    "eval_data": F("str", "with --data: the file scored before and after", optional=True),
    "lora": F(ANY, "with --data --lora: {rank, targets, alpha, modules, trainable_params, model_params}, else null",
              optional=True),
    "written": F("str", "with --data: model (adapters merged, if any) or adapter (--adapter-only)", optional=True),
    "checkpointing": F("bool", "with --data: gradient checkpointing was on (--checkpointing)", optional=True),
    "processes": F("int", "with --data: training processes under torchrun (1 without it)", optional=True),
    "fsdp": F("bool", "with --data: the model was fully sharded over them (--fsdp)", optional=True),
    "before": F(TEXT_SCORE, "with --data: the eval file scored before training", optional=True),
    "after": F(TEXT_SCORE, "with --data: and after", optional=True),
}
TRAIN = Obj({
    **RUN,
    "checkpoint": F("str", "the checkpoint (with --data, Hugging Face directory) written"),
    "task": F(TASK_SPEC, "pretraining task (built-in tasks)", optional=True),
    "model": F(Obj({"arch": F("str", "gpt2 or llama"), "n_layers": F("int", "blocks"), "n_heads": F("int", "heads"),
                    "d_model": F("int", "width")}), "model shape"),
    "n_params": F("int", "parameters"),
    "final_eval": F(TASK_EVAL, "accuracy after training on every component (built-in tasks)", optional=True),
    **ON_RECORDS,
})
FINETUNE = Obj({
    **RUN,
    "checkpoint": F("str", "the checkpoint (or, with --data, HF directory) written"),
    "parent": F(PARENT, "the fine-tuned checkpoint"),
    "task": F(TASK_SPEC, "fine-tuning task (built-in tasks)", optional=True),
    "lr_preset": F("str|null", "small / medium / large, or null for a number"),
    "final_eval": F(TASK_EVAL, "fine-tuning and pretraining operands after training (built-in tasks)", optional=True),
    **ON_RECORDS,
})
PLACEMENT = F(Obj({"device_map": F("str", "auto, balanced or sequential"),
                   "max_memory": F(ANY, "--max-memory in bytes per device (a GPU index or cpu), or null"),
                   "modules": F(ANY, "modules placed on each device (a GPU index, cpu or disk); null when the "
                                     "whole model fit on one device")}),
              "with --device-map: how accelerate dispatched the layers", optional=True)
EVAL = Obj({
    "checkpoint": F("str", "the checkpoint evaluated"),
    "eval_seed": F("int", "seed of the evaluation sets (built-in tasks)", optional=True),
    "n": F("int", "examples per set (built-in tasks) or records (--data)"),
    "precision": F("str", "resolved precision"),
    "tasks": F(TASK_EVAL, "accuracy per task and setting (built-in tasks)", optional=True),
    "data": F("str", "with --data: the prompt/answer records (lm-eval:NAME for --lm-eval-task NAME)", optional=True),
    "source": F(Obj({"fields": F(Map("str", "record key"), "--fields: the column(s) of each record key ({} as written)"),
                     "split": F("str|null", "--split"), "template": F("str", "--template: raw or letters"),
                     "include_path": F("str|null", "--include-path (lm-eval task YAMLs)"),
                     "sha256": F("str", "the record file's hash (an lm-eval task: its records' as JSON)")}),
                "with --data or --lm-eval-task: how the records were read", optional=True),
    "scores": F(TEXT_SCORE, "with --data: their scores", optional=True),
    "correct": F(List("bool"), "with --data: whether each record was answered (its kind's metric), in file order; "
                               "what compare holds an attack's accuracy against a floor with", optional=True),
    "attack": F(ANY, "with --data: {kind: quantize, of: the sha256 of the model it rounded, scheme, bits, group_size} "
                     "for a model wrapcli quantize wrote (compare reads it as evidence on that model), else null",
                optional=True),
    "shots": F(Obj({"from": F("str", "--shots-from: the records the demonstrations are drawn from"),
                    "seed": F("int", "--seed: orders the draw (per record)"),
                    "separator": F("str", "between demonstrations and before the question"),
                    "per_k": F(List(Obj({"k": F("int", "demonstrations before each prompt"),
                                         "metric": F("str", "exact_match or choice_accuracy"),
                                         **SCORE, "chance": F("float|null", "multiple choice: mean 1/k"),
                                         "correct": F(List("bool"), "each record answered, in file order")})),
                               "one row per K of --shots")}),
               "with --data --shots: accuracy with in-context examples (an attack)", optional=True),
    "device": F("str", "with --data: device", optional=True),
    "placement": PLACEMENT,
    "attention": F(Map(List(Obj({"layer": F("int", "block"), "head": F("int", "head"),
                                 "BOS": F("float", "mean attention share from the last position onto BOS"),
                                 "a": F("float", "onto input tokens a"), "b": F("float", "onto b"),
                                 "c": F("float", "onto c")})), "setting: natural, C_Te=0 or C_Te=1"),
                   "compiled counters: attention at the answer position", optional=True),
    "conjugate": F(Obj({"mapping": F(Map("str", "letter"), "the relabelling s"),
                        "tasks": F(TASK_EVAL, "the same sets through s(prompt), answers mapped back")}),
                   "with --conjugate", optional=True),
})
PROBE_LAYER = Obj({
    "layer": F("int", "residual-stream point: -1 = embedding output, l = output of block l"),
    "hook": F("str", "its name: hook_embed or blocks.{l}.hook_resid_post"),
    **SCORE,
    "majority_baseline": F("float", "accuracy of the training split's most common label on the held-out split"),
    "n_train": F("int", "examples the probe was fit on"),
    "n_test": F("int", "held-out examples (= n)"),
    "random_init": F(Obj({**SCORE, "per_init": F(List("float"), "accuracy on each random init")}),
                     "the best of the random-init models at this layer"),
    "margin": F(Obj({"baseline": F("str", "the bar: random_init (the best random init) or majority, whichever is higher"),
                     "value": F("float", "accuracy - the bar's accuracy, on the same held-out rows"),
                     "ci95": F(INTERVAL, "paired bootstrap 95% interval over the held-out rows"),
                     "ci_bonferroni": F(INTERVAL, "the same at confidence_bonferroni (what compare uses)"),
                     "confidence_bonferroni": F("float", "1 - 0.05 / layers")}),
                 "how far the probe beats its best baseline"),
    "reference": F(Obj(SCORE), "the same probe on --reference", optional=True),
})
ATTENTION = List(Obj({"layer": F("int", "block"), "head": F("int", "head"),
                      "a": F("float", "mean attention share from <ans> onto text tokens a"),
                      "b": F("float", "onto b"), "c": F("float", "onto c")}))
LENS_ROW = Obj({"layer": F("int", "-1 = the embedding output, then each block"), "hook": F("str", "its name"),
                "accuracy": F("float", "records whose answer (first token) is the top token there, or whose correct "
                                       "choice's first token beats the others'"),
                "n": F("int", "records"), "ci95": F(INTERVAL, "Wilson"),
                "mean_rank": F("float|null", "free-form: the answer's mean rank (0 = top)"),
                "median_rank": F("float|null", "free-form: its median rank"),
                "correct": F(List("bool"), "each record, in file order")})
PROBE = Obj({
    "checkpoint": F("str", "the checkpoint probed"),
    "target": F("str", "display name of what is decoded"),
    "target_task": F("str|null", "the task whose answer is the label (built-in tasks); compare matches on it"),
    "prompt_task": F("str|null", "the task the prompts ask (built-in tasks)"),
    "data": F("str|null", "the text/label JSONL (user data)"),
    "n": F("int", "examples"),
    "n_classes": F("int", "distinct labels"),
    "split": F(Obj({"grouped": F("bool", "whether records were split by their group key"),
                    "class_balance": F(Map(Map("int", "label"), "train or test"), "label counts on each side")}),
               "the held-out split (25%), the same for every model"),
    "random_init_seeds": F(List("int"), "init seeds of the random-init baselines"),
    "reference": F("str|null", "--reference checkpoint"),
    "layers": F(List(PROBE_LAYER), "one probe per residual-stream point"),
    "device": F("str", "device"),
    "placement": PLACEMENT,
    "attention": F(Map(ATTENTION, "model or reference"), "attention from <ans> (built-in tasks)", optional=True),
    "lens": F(Obj({"records": F("str", "--lens: the prompt/answer or multiple-choice records read"),
                   "multiple_choice": F("bool", "choice records: the correct choice's first token has the highest logit"),
                   "model": F(List(LENS_ROW), "the checkpoint, one row per residual-stream point"),
                   "reference": F(ANY, "the --reference's rows, or null")}),
              "with --lens: the logit lens (the final norm and unembedding read at every point; a lens-only "
              "report, on a Hugging Face directory without --data, has no probe layers)", optional=True),
})
PRUNE = Obj({
    "checkpoint": F("str", "the checkpoint pruned"),
    "task": F("str|null", "the scored task (built-in); compare matches on it"),
    "data": F("str|null", "the scored prompt/answer JSONL (user data)"),
    "also": F(List("str"), "other tasks evaluated at each K"),
    "unit": F("str", "neuron, head, weight or row"),
    "operation": F("str", "zero (units set to 0) or revert (units reset to revert_to's values)"),
    "revert_to": F(ANY, "{path, sha256} of the base the units were reset to, or null"),
    "scoring_spurious": F("float|null", "built-in tasks: share of scoring strings with the spurious relation "
                                        "(0: saliency on C_Te = 0 inputs); null for --data and compiled counters "
                                        "(scored on natural inputs)"),
    "iterative": F("bool", "re-scored after every removal"),
    "n_units": F("int", "units of that kind in the model"),
    "batches": F("int", "scoring passes"),
    "batch_size": F("int", "sequences per scoring pass"),
    "pruned": F(List(Obj({"layer": F("int", "block"),
                          "kind": F("str", "neuron, head, weight:neuron, weight:head, row:MODULE (a module of the block, "
                                           "e.g. self_attn.q_proj) or (compiled) weight:PARAMETER"),
                          "index": F("int", "unit index (flat weight index for weights, output feature for rows)"),
                          "score": F("float", "weight x gradient: first-order estimate of the loss drop when zeroed")})),
                "units in pruning order"),
    "sweep": F(List(Obj({"k": F("int", "units pruned"),
                         "results": F(Map(ANY, "task (eval's per-setting scores) or 'data' (text scores)"),
                                      "evaluation of the pruned model")})), "one row per K"),
    "written": F(ANY, "{path, k} of the -w checkpoint, or null"),
    "precision": F("str", "precision of the evaluations (the saliency is fp32)"),
    "device": F("str", "device"),
})
CURVE = Obj({
    "name": F("str", "revived, control:NAME or scratch"),
    "path": F("str|null", "its checkpoint"),
    "sha256": F("str|null", "its hash"),
    "accuracy": F(Obj({
        "n": F("int", "examples per evaluation"),
        "per_seed": F(List(List("float")), "accuracy at each eval step, per seed"),
        "mean": F(List("float"), "mean over seeds"),
        "std": F(List("float"), "standard deviation over seeds"),
        "ci95": F(List(INTERVAL), "Student-t 95% interval of the mean over seeds (a point for one seed)"),
    }), "the curve"),
    "steps_to_threshold": F(Obj({
        "mean_curve": F("float|null", "of the mean curve; null = never"),
        "per_seed": F(List("float|null"), "per seed, interpolated in log(step); null = never"),
    }), "when the threshold is reached"),
    "loss": F(Obj({"per_seed": F(List(List("float")), "mean answer loss on --eval-data at each step, per seed"),
                   "mean": F(List("float"), "mean over seeds")}), "with --data", optional=True),
    "recovered_fraction": F(List("float"), "with --data and --reference: (accuracy - fine-tuned's) / "
                                           "(reference's - fine-tuned's) of the mean curve, per step", optional=True),
    "recovered_final": F(Obj({"value": F("float", "the recovered fraction after the last step (records' mean over "
                                                  "seeds)"),
                              "ci95": F(List("float"), "its interval"),
                              "interval": F("str", "how: a paired bootstrap over the held-out records (the fine-tune, "
                                                   "the reference and the relearned model scored on the same ones)")}),
                         "with --data and --reference", optional=True),
})
SPEEDUP = Obj({
    "status": F("str", "compared (value set), not_revived (a seed missed the threshold), already_there (at the "
                       "threshold before reFT) or no_control"),
    "value": F("float|null", "geometric-mean steps of the fastest control / of the revived model"),
    "ci95": F(ANY, "bootstrap 95% interval [low, high], or null"),
    "lower_bound": F("bool", "a control seed never reached the threshold (counted as the full run)"),
    "best_control": F("str|null", "the control with the smallest speed-up"),
    "n_seeds": F("int", "reFT seeds"),
    "controls": F(Map(Obj({"value": F("float", "speed-up over this control"), "ci95": F(INTERVAL, "bootstrap interval"),
                           "lower_bound": F("bool", "censored"),
                           "steps_to_threshold": F(List("float|null"), "the control's steps per seed")}),
                      "control name"), "speed-up over each control"),
    "verdict": F("str", "one sentence (display only: decisions read status and value)"),
})
RELEARNING = Obj({
    "statistic": F("str", "what value measures"),
    "outcome": F("str", "pass, fail or unclear at margin"),
    "value": F("float|null", "the best LR's held-out accuracy minus its floor; null when unclear as given"),
    "ci95": F(ANY, "[the best LR's lower bound, the highest upper bound over LRs] at confidence, or null"),
    "confidence": F("float", "per-LR confidence: 1 - 0.05 / LRs (Bonferroni)"),
    "margin": F("float", "what the interval is held against"),
    "best_lr": F("float|null", "the LR with the highest lower bound"),
    "floor": F(Obj({"source": F("str", "control (the same relearning of --control), chance (multiple choice: mean "
                                       "1/k) or reference_wrong (held-out records the reference gets wrong)"),
                    "value": F("float", "the floor at best_lr", optional=True),
                    "n": F("int", "records behind it", optional=True)}), "what a model without the knowledge reaches"),
    "per_lr": F(List(Obj({"lr": F("float", "learning rate"),
                          "accuracy": F("float", "held-out accuracy after the last step (mean over seeds per record)"),
                          "n": F("int", "records: held out and answered by the reference"),
                          "floor": F("float", "the floor at this LR"), "floor_n": F("int", "records behind the floor"),
                          "value": F("float", "accuracy - floor"),
                          "ci": F(INTERVAL, "its interval at confidence"),
                          "trained": F("bool|null", "the loss fell by at least 1% of its start: the attack moved the "
                                                    "model at this LR (an LR that did not cannot make the outcome fail)")})),
                 "one row per LR of the grid"),
    "n_records": F("int", "records in --eval-data"),
    "n_held_out": F("int", "of them, records whose prompt is not in --data"),
    "n_known": F("int", "held-out records the reference answers (all held-out ones without --reference)"),
    "n_reference_wrong": F("int", "held-out records the reference gets wrong"),
    "start_accuracy": F("float|null", "the fine-tuned model's accuracy on the known records before relearning"),
    "text": F("str", "the numbers in words"),
    "relearn_loss": F(ANY, "per LR of the grid, [before, after]: the mean answer loss on the relearning records "
                           "before the attack and after its last step (mean over seeds); null when not measured"),
    "trained": F("bool|null", "whether the attack trained at any LR; false makes the outcome unclear "
                              "('the attack did not train'); null when not measured"),
    "settle": F("str|null", "what would settle an unclear outcome"),
})
REVIVE = Obj({
    "task": F("str|null", "the capability revived (built-in tasks); compare matches on it"),
    "data": F("str", "with --data: the records relearned on", optional=True),
    "eval_data": F("str", "with --data: the held-out records scored; compare matches its content", optional=True),
    "metric": F("str", "with --data: exact_match or choice_accuracy, the accuracy the curves give", optional=True),
    "reference": F(ANY, "with --data: {path, metric, accuracy, n, ci95} of the original model, or null", optional=True),
    "start": F(Obj(SCORE), "with --data: the fine-tuned model on --eval-data before relearning", optional=True),
    "threshold": F("float", "accuracy that counts as revived"),
    "threshold_source": F("str", "where the threshold came from"),
    "lr": F("float", "reFT learning rate (with --data: the chosen LR of the grid, whose curves follow)"),
    "lr_source": F("str", "where it came from"),
    "train": F(TRAIN_CFG, "resolved settings"),
    "seeds": F(List("int"), "reFT seeds"),
    "eval_steps": F(List("int"), "evaluated steps: neighbours at most 1.5x apart"),
    "models": F(List(CURVE), "revived first, then the controls"),
    "speedup": F(SPEEDUP, "how much faster the capability returns than in the controls"),
    "lr_grid": F(List(Obj({"lr": F("float", "learning rate"), "models": F(List(CURVE), "as models"),
                           "speedup": F(SPEEDUP, "as speedup")})),
                 "with --data: every LR of the attacker's grid", optional=True),
    "relearning": F(RELEARNING, "with --data: the relearning criterion against a floor (what compare reads)",
                    optional=True),
    "lora": F(ANY, "with --data --lora: {rank, targets, alpha, modules, trainable_params, model_params} of the "
                   "relearning's adapters, else null", optional=True),
    "checkpointing": F("bool", "with --data: gradient checkpointing was on (--checkpointing)", optional=True),
    "processes": F("int", "with --data: training processes under torchrun (1 without it)", optional=True),
    "fsdp": F("bool", "with --data: the model was fully sharded over them (--fsdp)", optional=True),
    "device": F("str", "device"),
})
CRITERION = Obj({
    "kind": F("str", "behaviour, probe, prune, revive, view (the multiple-choice view of a free-form task) or attack "
                     "(an eval report under in-context examples or quantization)"),
    "statistic": F("str", "what value measures"),
    "value": F("float|null", "the statistic"),
    "ci95": F(ANY, "its interval [low, high] (Bonferroni-widened for probe layers and prune K), or null"),
    "threshold": F("float|null", "what the interval is held against"),
    "outcome": F("str", "pass (interval above), fail (at or below) or unclear (straddles, too few seeds ...)"),
    "text": F("str", "the numbers in words"),
    "source": F("str|null", "the report it came from"),
    "settle": F("str|null", "what would settle an unclear criterion"),
    "layer": F("int", "probe: the best layer", optional=True),
    "hook": F("str", "probe: its name", optional=True),
    "k": F("int", "prune: the best K", optional=True),
    "unit": F("str", "prune: unit kind", optional=True),
    "operation": F("str", "prune: zero or revert (to the base)", optional=True),
    "recovered_fraction": F(ANY, "prune: {value, ci95, note} or null", optional=True),
    "lower_bound": F("bool", "revive: a control was censored", optional=True),
    "control": F("str|null", "revive: the fastest control", optional=True),
    "floor": F("str", "revive --data: what the floor is (control, chance or reference_wrong)", optional=True),
    "lr": F("float|null", "revive --data: the relearning LR the criterion rests on", optional=True),
    "attack": F("str", "attack: which one (quantization, in-context examples) the eval report ran", optional=True),
    "interval": F("str", "behaviour: Newcombe paired (the same examples, per-example outcomes known) or Newcombe "
                         "independent", optional=True),
})
BEHAVIOUR = Obj({**SCORE, "metric": F("str", "accuracy (built-in task), exact_match (prompt/answer JSONL) or "
                                             "choice_accuracy (multiple-choice JSONL)"),
                 "majority_baseline": F("float", "built-in tasks: the most common answer's share; multiple choice: "
                                                 "chance (mean 1/k)", optional=True),
                 "correct": F(List("bool"), "each example's outcome, in order (the same examples for every checkpoint: "
                                            "the behaviour criterion's interval is paired); absent for compiled counters",
                              optional=True)})
COMPARE = Obj({
    "checkpoints": F(List(Obj({"path": F("str", "checkpoint"), "sha256": F("str", "hash")})), "compared; first = base"),
    "base": F("str", "the base checkpoint"),
    "thresholds": F(Obj({"drop": F("float", "fall that counts as suppressed"),
                         "probe_margin": F("float", "probe margin over its best baseline"),
                         "prune_gain": F("float", "pruned gain over max(unpruned, majority)"),
                         "revive_speedup": F("float", "speed-up over the fastest control"),
                         "min_seeds": F("int", "reFT seeds a revival criterion needs"),
                         "relearn_margin": F("float", "held-out accuracy over the floor after relearning (revive --data)"),
                         "view_margin": F("float", "multiple-choice accuracy over chance in a free-form task's "
                                                   "multiple-choice view (--view)"),
                         "attack_margin": F("float", "accuracy under an attack over its floor (eval reports)")}),
                   "the decision thresholds"),
    "weights": F(List(Obj({
        "a": F("str", "base"), "b": F("str", "other"),
        "tensors": F(Map(ANY, "tensor name"), "shape, norm, delta_norm, relative_change, cosine; rank and "
                                              "energy_top (share of dW's energy in its top 1/4/16 directions) for matrices"),
        "layers": F(Map(Obj({"relative_change": F("float", "||dW|| / ||W|| over the block"),
                             "n_tensors": F("int", "tensors"), "n_changed": F("int", "tensors that moved")}),
                        "block index"), "per block"),
        "module_kinds": F(Map(ANY, "module kind"), "as layers, per module kind"),
        "changed_tensors": F(List("str"), "tensors that moved"),
        "l2_distance": F("float", "||W_b - W_a|| over every tensor"),
        "top_units": F(List(ANY), "neurons and heads whose reading weights moved most"),
    })), "streamed weight diff, one per checkpoint after the base"),
    "behaviour": F(Map(Map(BEHAVIOUR, "checkpoint"), "task"), "accuracy of every checkpoint per task"),
    "depth": F(Map(Map(List(Obj({"position": F("int", "answer token, 1 = first"),
                                 "kl": F("float", "mean KL(base || checkpoint) of the next-token distribution, nats"),
                                 "n": F("int", "records with an answer token there")})), "checkpoint"),
                   "JSONL task"), "how deep the change goes (Qi et al. 2024), JSONL tasks only"),
    "representations": F(Map(List(Obj({"layer": F("int", "as probe layers"), "hook": F("str", "its name"),
                                       "cka": F("float", "linear CKA with the base")})), "checkpoint"),
                         "per-layer similarity to the base"),
    "evidence": F(Map(List("str"), "checkpoint"), "reports given, per checkpoint"),
    "verdicts": F(Map(List(Obj({
        "task": F("str", "capability"),
        "label": F("str", "intact, wrapped, removed, suppressed or inconclusive"),
        "reason": F("str", "why this label"),
        "localised": F("bool|null", "true: a prune criterion passed (a few units restore it); false: pruning "
                                    "failed (not localised in the units swept; no evidence of absence); null: no "
                                    "or unclear prune evidence"),
        "base": F(BEHAVIOUR, "base accuracy"),
        "fine_tuned": F(BEHAVIOUR, "this checkpoint's accuracy"),
        "criteria": F(List(CRITERION), "behaviour first, then every piece of evidence"),
        "settle": F(List("str"), "what would settle an inconclusive verdict"),
        "confidence": F("float", "interval level"),
        "text": F("str", "the verdict in words"),
    })), "checkpoint"), "one verdict per checkpoint and task"),
    "views": F(List(Obj({"free_form": F("str", "prompt/answer records of the capability"),
                         "multiple_choice": F("str", "multiple-choice records of the same facts")})),
               "--view pairs: the free-form task's verdict carries a view criterion from the multiple-choice task"),
    "placement": PLACEMENT,
    "device": F("str", "device"),
})
# -- checkpoint metadata ----------------------------------------------------------------
# One entry of a checkpoint's lineage (wrapcli/models/lineage.py lineage_entry), checked when a
# checkpoint is read. Open: keys it does not list are kept, so a newer wrapcli's entries load.
LINEAGE_ENTRY = Obj({
    "kind": F("str", "train, finetune, revive, prune, quantize, ablate or compile"),
    "parent_sha256": F("str|null", "sha256 of the checkpoint it was made from (null for a fresh model)"),
    "command": F(List("str"), "the command line as typed, one item per argument"),
    "seed": F("int", "seed of the step"),
    "task": F("str|null", "task or data it trained on (data:FILE for user records)"),
    "wrapcli_version": F("str", "wrapcli that wrote it"),
    "created": F("str", "UTC time (SOURCE_DATE_EPOCH when set)"),
    "accuracy": F(Map("float", "component"), "final natural-set accuracy per component (built-in tasks)"),
    "steps": F("int", "training steps (train, finetune, revive)", optional=True),
    "lr": F("float", "learning rate (train, finetune, revive)", optional=True),
    "precision": F("str", "fp32 or bf16 (train, finetune, revive)", optional=True),
    "lr_preset": F("str|null", "small / medium / large, or null for a number (finetune)", optional=True),
    "spurious": F("float", "C: share of strings with the spurious feature (finetune)", optional=True),
    "spurious_offset": F("int", "the spurious relation's offset (finetune)", optional=True),
    "mix": F("float", "share of pretraining batches mixed in (finetune)", optional=True),
    "optimizer": F("str", "compiled models: sgd", optional=True),
    "momentum": F("float", "compiled models: SGD momentum", optional=True),
    "data_sha256": F("str", "user records: sha256 of the training file", optional=True),
    "lora": F(ANY, "user records with --lora: rank, alpha, targets, modules, parameter counts", optional=True),
    "unit": F("str", "prune: neuron, head, weight or row", optional=True),
    "k": F("int", "prune: units pruned", optional=True),
    "units": F(List(ANY), "prune: the units, in pruning order", optional=True),
    "operation": F("str", "prune: zero or revert", optional=True),
    "revert_to": F(ANY, "prune --revert-to: {path, sha256} of the base, else null", optional=True),
    "at_step": F("int", "revive --save-dir: the reverse fine-tuning step kept", optional=True),
    "layer": F("int", "ablate: the block whose direction was projected out", optional=True),
    "direction": F("str", "ablate: reference or contrast", optional=True),
    "scheme": F("str", "quantize: rtn or nf4", optional=True),
    "bits": F("int", "quantize: bits per weight", optional=True),
    "group_size": F("int", "quantize: group (rtn) or block (nf4) size", optional=True),
    "noise": F("float", "compile: scale of the noise added to the weights", optional=True),
    "max_len": F("int", "compile: the compiled program's maximum length", optional=True),
}, open=True)


def lineage_problems(lineage) -> list[str]:
    """Every way a checkpoint's lineage departs from LINEAGE_ENTRY (empty when it conforms)."""
    problems: list[str] = []
    _check(lineage, List(LINEAGE_ENTRY), "lineage", problems)
    return problems


QUANTIZE = Obj({
    "checkpoint": F("str", "the checkpoint quantized"),
    "written": F("str", "the de-quantized checkpoint written (-o)"),
    "scheme": F("str", "rtn (round to nearest, absmax per group) or nf4 (bitsandbytes' NormalFloat code book)"),
    "bits": F("int", "bits per weight"),
    "group_size": F("int", "inputs per group of an output channel (rtn; 0 = the whole channel) or values per "
                           "block of the flattened tensor (nf4)"),
    "n_tensors": F("int", "weights quantized: every linear map in the blocks"),
    "mean_relative_change": F("float", "mean over them of ||W' - W|| / ||W||"),
    "tensors": F(List(Obj({"name": F("str", "parameter name"), "shape": F(List("int"), "its shape"),
                           "relative_change": F("float", "||W' - W|| / ||W||")})), "one row per weight"),
})
ABLATE = Obj({
    "checkpoint": F("str", "the fine-tuned checkpoint attacked"),
    "data": F("str", "the records: the direction is read at their last prompt position, and scored"),
    "written": F("str", "the checkpoint written with the chosen direction projected out of its weights (-o)"),
    "direction": F(Obj({"source": F("str", "reference (fine-tune mean - reference mean) or contrast (records' mean - "
                                           "the contrast records' mean, on the fine-tuned model)"),
                        "other": F("str", "the reference checkpoint or the contrast records")}), "how it was taken"),
    "seed": F("int", "the split's seed"),
    "choose_records": F(List("int"), "records (0-based, file order) the block is chosen on"),
    "report_records": F(List("int"), "records the chosen block's accuracy is reported on"),
    "layers": F(List(Obj({"layer": F("int", "the block whose output the direction is read at"),
                          "hook": F("str", "its name"), "direction_norm": F("float", "|mean difference| before normalising"),
                          "choose": F(Obj(SCORE), "accuracy on the choosing half with this direction ablated")})),
                "the sweep over source blocks"),
    "layer": F("int", "the block chosen (highest accuracy on the choosing half; the earliest of ties)"),
    "hook": F("str", "its name"),
    "before": F(Obj({"choose": F(Obj(SCORE), "choosing half"), "report": F(Obj(SCORE), "reporting half")}),
                "the fine-tuned model, not ablated"),
    "after": F(Obj({"report": F(Obj(SCORE), "the reporting half: the figure that the choice cannot inflate"),
                    "all": F(Obj(SCORE), "every record")}), "the written model"),
    "correct": F(List("bool"), "each record answered by the written model, in file order (compare reads it)"),
    "device": F("str", "device"),
})
RESULTS = {"train": TRAIN, "finetune": FINETUNE, "eval": EVAL, "probe": PROBE, "prune": PRUNE,
           "revive": REVIVE, "compare": COMPARE, "quantize": QUANTIZE, "ablate": ABLATE}
assert set(RESULTS) == set(RESULTS_VERSIONS)

_PY = {"str": str, "int": int, "float": (int, float), "bool": bool, "null": type(None)}


def validate(report: dict) -> list[str]:
    """Every way ``report`` departs from the schema (empty when it conforms)."""
    problems: list[str] = []
    _check(report, ENVELOPE, "", problems)
    if isinstance(report, dict) and report.get("schema_version") != ENVELOPE_VERSION:
        problems.append(f"schema_version: {report.get('schema_version')!r} is not {ENVELOPE_VERSION}, the envelope "
                        "this wrapcli reads")
    name = str(report.get("schema", "")).removeprefix("wrapcli.")
    if name not in RESULTS:
        return problems + [f"schema: unknown report {report.get('schema')!r}"]
    if report.get("results_version") != RESULTS_VERSIONS[name]:
        problems.append(f"results_version: {report.get('results_version')} is not {RESULTS_VERSIONS[name]}")
    _check(report.get("results"), RESULTS[name], "results", problems)
    return problems


def _check(value, spec, path: str, problems: list[str]) -> None:
    if spec == ANY:
        return
    if isinstance(spec, str):
        kinds = spec.split("|")
        ok = any(isinstance(value, _PY[k]) and not (k in ("int", "float") and isinstance(value, bool)) for k in kinds)
        if not ok:
            problems.append(f"{path or '.'}: expected {spec}, got {type(value).__name__}")
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{path or '.'}: {value} is not a finite number")
        return
    if isinstance(spec, Obj):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        for key, f in spec.fields.items():
            if key in value:
                _check(value[key], f.type, f"{path}.{key}".lstrip("."), problems)
            elif not f.optional:
                problems.append(f"{path}.{key}: missing".lstrip("."))
        if not spec.open:
            problems += [f"{path}.{k}: not in the schema".lstrip(".") for k in value if k not in spec.fields]
    elif isinstance(spec, List):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check(item, spec.item, f"{path}[{i}]", problems)
    elif isinstance(spec, Map):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object keyed by {spec.key}, got {type(value).__name__}")
            return
        for k, item in value.items():
            _check(item, spec.value, f"{path}[{k}]", problems)


def _type_name(spec) -> str:
    if isinstance(spec, str):
        return spec.replace("|", " or ")
    if isinstance(spec, Obj):
        return "object"
    if isinstance(spec, List):
        return f"list of {_type_name(spec.item)}"
    return f"map {{{spec.key}: {_type_name(spec.value)}}}"


def _rows(spec, path: str):
    while isinstance(spec, (List, Map)):
        path += "[]" if isinstance(spec, List) else "{}"
        spec = spec.item if isinstance(spec, List) else spec.value
    if isinstance(spec, Obj):
        for key, f in spec.fields.items():
            sub = f"{path}.{key}".lstrip(".")
            yield sub, _type_name(f.type), f.doc + (" (optional)" if f.optional else "")
            yield from _rows(f.type, sub)


def markdown() -> str:
    """docs/reports.md: every key of every report."""
    out = ["# wrapcli report schema", "",
           "Generated from `wrapcli/report/schema.py` by `python -m wrapcli.report.schema > docs/reports.md`; "
           "a test fails when it is stale. `[]` marks a list item, `{}` a map value "
           "(keys are data: tasks, answers, checkpoints).", "",
           f"## Envelope (schema_version {ENVELOPE_VERSION})", "", "| key | type | meaning |", "| --- | --- | --- |"]
    out += [f"| `{k}` | {t} | {d} |" for k, t, d in _rows(ENVELOPE, "")]
    for name, spec in RESULTS.items():
        out += ["", f"## `wrapcli {name}` results (results_version {RESULTS_VERSIONS[name]})", "",
                "| key | type | meaning |", "| --- | --- | --- |"]
        out += [f"| `{k}` | {t} | {d} |" for k, t, d in _rows(spec, "results")]
    out += ["", "## A checkpoint's lineage entry", "",
            "Each checkpoint carries its lineage (docs/checkpoint-format.md), one entry per step that made it, "
            "checked when the checkpoint is read; keys not listed here are kept.", "",
            "| key | type | meaning |", "| --- | --- | --- |"]
    out += [f"| `{k}` | {t} | {d} |" for k, t, d in _rows(LINEAGE_ENTRY, "lineage[]")]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
