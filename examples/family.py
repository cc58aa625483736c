"""One table over a family of audited checkpoints (examples/third-party.mk with several
TUNED directories): each member's verdict per capability, every criterion with its value
and 95% interval, and the wall time make spent on it, as Markdown and JSON.

Run: python examples/family.py OUT/family OUT/m1 OUT/m2 ...   # writes OUT/family.md and .json

Each member folder holds that member's compare report (audit.json, or battery.json for the
battery) and cost_s (the seconds each make run spent on it, one line per run). The
intervals are each member's own (95% per capability); over a family of M members, up to
about 5% of M members could show a pass by chance alone, so the table also says which
passes would still pass at 95% over the whole family (Bonferroni: the 1 - 0.05/M interval,
approximated from the reported one as a normal interval)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from statistics import NormalDist

from summarize import evidence

REPORTS = ("battery.json", "audit.json")


def member(folder: Path) -> dict:
    """A member's verdicts (from its compare report) and its cost."""
    report = next((folder / r for r in REPORTS if (folder / r).exists()), None)
    if report is None:
        sys.exit(f"{folder}: no audit.json or battery.json (did its audit finish?)")
    results = json.loads(report.read_text())["results"]
    cost = folder / "cost_s"
    seconds = sum(float(x) for x in cost.read_text().split()) if cost.exists() else None
    (tuned,) = [name for name in results["verdicts"]]
    return {"name": folder.name, "checkpoint": tuned, "report": str(report), "cost_s": seconds,
            "verdicts": results["verdicts"][tuned]}


def family_pass(c: dict, m: int) -> bool | None:
    """Whether a passing criterion's interval still clears its threshold when widened from
    95% to 1 - 0.05/m (normal approximation from its half-width); None where there is none."""
    if c.get("outcome") != "pass" or not c.get("ci95") or c.get("value") is None or c.get("threshold") is None:
        return None
    z95, zfam = NormalDist().inv_cdf(0.975), NormalDist().inv_cdf(1 - 0.025 / m)
    lower = c["value"] - (c["value"] - c["ci95"][0]) * zfam / z95
    return lower > c["threshold"]


def describe(c: dict) -> str:
    """One criterion in words and numbers; relearning against its floor in points."""
    if c["kind"] == "revive" and c.get("floor") and c.get("ci95"):
        return (f"relearning {c['outcome']} {100 * c['value']:+.1f} [{100 * c['ci95'][0]:+.1f}, "
                f"{100 * c['ci95'][1]:+.1f}] over the {c['floor'].replace('_', ' ')} floor")
    return evidence(c)


def table(members: list[dict]) -> list[str]:
    m = len(members)
    lines = [f"# Family audit: {m} checkpoints", "",
             "| checkpoint | capability | verdict | criteria (value, 95% interval) | passes over the family | cost |",
             "| --- | --- | --- | --- | --- | --- |"]
    for mem in members:
        for v in mem["verdicts"]:
            crit = "; ".join(describe(c) for c in v["criteria"])
            fam = [c["kind"] for c in v["criteria"] if family_pass(c, m)]
            cost = f"{mem['cost_s']:.0f} s" if mem["cost_s"] is not None else "–"
            lines.append(f"| {mem['name']} | {Path(v['task']).name} | **{v['label']}** | {crit} | {', '.join(fam) or 'none'} | "
                         f"{cost} |")
    lines += ["", f"Each interval is the member's own (95%). Over {m} members, 'passes over the family' lists the "
              f"criteria whose interval, widened to {100 * (1 - 0.05 / m):.2f}% (Bonferroni over the members), still "
              "clears its threshold; a verdict resting on the others could be one of the chance passes a family "
              "of this size expects. Cost: wall seconds make spent on the member, summed over runs.", ""]
    return lines


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: python examples/family.py OUT/family MEMBER_DIR ...")
    out = Path(sys.argv[1])
    members = [member(Path(f)) for f in sys.argv[2:]]
    for mem in members:
        for v in mem["verdicts"]:
            for c in v["criteria"]:
                c["passes_over_family"] = family_pass(c, len(members))
    out.with_suffix(".md").write_text("\n".join(table(members)))
    out.with_suffix(".json").write_text(json.dumps({"members": members, "family_size": len(members)}, indent=2))
    print("\n".join(table(members)))


if __name__ == "__main__":
    main()
