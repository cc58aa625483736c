"""The evidence compare weighs: prune, probe, revive, ablate and attack-eval reports, read
and checked (schema, versions, finite numbers, rows to read) and keyed by the checkpoint
each was made on."""

from __future__ import annotations

import json
from pathlib import Path

from wrapcli.core.errors import UsageError, WrapError
from wrapcli.report.schema import RESULTS_VERSIONS, validate

EVIDENCE = ("wrapcli.prune", "wrapcli.probe", "wrapcli.revive", "wrapcli.eval", "wrapcli.ablate")  # eval: an attack's


def nonfinite(value, path: str) -> list[str]:
    """Every number in ``value`` (a report's results) that is not finite, by its field: JSON
    readers accept Infinity and NaN, and no figure compare reads may be one."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path}: {value} is not a finite number"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in nonfinite(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in nonfinite(v, f"{path}[{i}]")]
    return []


# the lists each kind of evidence needs at least one row of (compare takes the best row)
NON_EMPTY = {"wrapcli.probe": ("layers",), "wrapcli.prune": ("sweep",), "wrapcli.revive": ("models",)}


def empty_evidence(schema: str, results) -> list[str]:
    if not isinstance(results, dict):
        return []
    lens_only = schema == "wrapcli.probe" and results.get("lens")  # a logit lens without probes
    return [f"results.{key}: an empty list (no row to read)" for key in NON_EMPTY.get(schema, ())
            if isinstance(results.get(key), list) and not results[key] and not lens_only]


def attacked(path, results: dict, sha: str | None) -> str | None:
    """The checkpoint an eval report is attack evidence on: the model quantize rounded, or
    the evaluated one under in-context examples; an eval report of neither is refused."""
    shots = [row["k"] for row in (results.get("shots") or {}).get("per_k", []) if row["k"] > 0]
    if results.get("data") is None or "correct" not in results or not (results.get("attack") or shots):
        raise WrapError(f"{path}: an eval report is evidence only as an attack: on records (--data), with "
                        "in-context examples (--shots) or on a model that wrapcli quantize wrote")
    return results["attack"]["of"] if results.get("attack") else sha


def load_reports(paths, shas: dict[str, str]) -> dict[str, list[dict]]:
    """Reports keyed by the checkpoint they were computed on (their first input's sha256);
    a report made on a checkpoint outside this comparison is refused."""
    from wrapcli.core.files import sha256

    by_ckpt: dict[str, list[dict]] = {name: [] for name in shas}
    owner = {sha: name for name, sha in shas.items()}
    seen: dict[str, str] = {}
    for path in paths:
        digest = sha256(path) if Path(path).is_file() else None
        if digest is not None and digest in seen:
            raise UsageError(f"{path}: the same report as {seen[digest]}; give each report once")
        seen[digest] = str(path)
        try:
            rep = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise WrapError(f"{path}: cannot read the report ({e.strerror})") from None
        except ValueError as e:  # UnicodeDecodeError included
            raise WrapError(f"{path}: not a JSON report ({str(e)[:120]})") from None
        if not isinstance(rep, dict) or "schema" not in rep or "results" not in rep:
            raise WrapError(f"{path}: not a wrapcli report (no 'schema' and 'results')")
        schema, version = rep["schema"], rep.get("results_version", 1)
        if schema not in EVIDENCE:
            raise WrapError(f"{path}: {schema} reports carry no evidence for compare (give prune, probe, revive, "
                            "ablate, or eval under an attack)")
        current = RESULTS_VERSIONS[schema.split(".")[1]]
        if not isinstance(version, int) or version < current:
            raise WrapError(f"{path}: made by an older wrapcli (results version {version}, this one reads "
                            f"{current}); run {schema.split('.')[1]} again")
        problems = validate(rep) + nonfinite(rep.get("results"), "results") + empty_evidence(schema, rep.get("results"))
        if problems:
            raise WrapError(f"{path}: malformed {schema} report ({problems[0]}"
                            + (f", and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ")"))
        inputs, results = rep["inputs"], rep["results"]
        sha = inputs[0]["sha256"] if inputs else None
        if schema == "wrapcli.eval":
            sha = attacked(path, results, sha)
        if sha not in owner:
            raise WrapError(f"{path}: made on a checkpoint (sha256 {str(sha)[:12]}…) that is not among those compared")
        by_ckpt[owner[sha]].append({"path": str(path), "schema": schema, "results": results,
                                    "input_shas": {i["sha256"] for i in inputs[1:]}})
    return by_ckpt


