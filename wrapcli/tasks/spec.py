"""Task specs: a small, validated, JSON-round-tripping description of a task.

A spec fully determines an infinite training stream and fixed evaluation sets from its
seed (docs/design.md decision 3), so no dataset files exist. CLI short forms:
``count:a``, ``index:b``, ``token``, ``count:aa`` (a composite operand selects the
composite family), ``count`` (operand drawn from the prior), and comma-joined mixes such
as ``count,index`` or ``count,count2:a,count3:a`` (components drawn uniformly).
``count:a@b`` asks for the count of a but answers with the count of b: the paper's
"randFT" data, which teaches a model to answer the pretraining prompt wrongly.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from wrapcli.core.errors import UsageError, WrapError
from wrapcli.tasks import vocab

COMPOSITE_FAMILIES = {"count": "count_composite", "index": "index_composite"}
COUNTING = ("count", "count_composite", "count2", "count3")
INDEXING = ("index", "index_composite")


@dataclass(frozen=True)
class Component:
    """One (family, operand) pair; ``operand=None`` draws it from the spec's prior.
    ``answer``, if set, is the operand the answer is computed for (``count:a@b``: the
    prompt names a, the answer is the count of b)."""

    family: str
    operand: str | None = None
    answer: str | None = None

    def __str__(self) -> str:
        name = self.family if self.operand is None else f"{self.family}:{self.operand}"
        return name if self.answer is None else f"{name}@{self.answer}"

    @property
    def answered(self) -> str | None:
        """The operand the answer is computed for."""
        return self.operand if self.answer is None else self.answer


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines a task's data. Defaults are the paper's values.

    - ``window``: O', the number of final text positions a counting task looks at (40).
    - ``k``: the indexing task asks for the k-th occurrence counted back from <eot> (6).
    - ``offset``: the token task asks for the token this many positions before <eot> (40).
    - ``text_len``: terminals per text (250; the CPU preset uses fewer).
    - ``prior``: operand prior over a, b, c for components without a fixed operand;
      a composite operand draws its two letters independently from it.
    - ``spurious``: C, the exact fraction of strings in which the spurious feature holds:
      count(``spurious_operands[1]``) = count(``spurious_operands[0]``) + ``spurious_offset``
      in the counted window (for indexing: the k-th occurrence's position plus the offset).
      In the other strings the relation is made not to hold (see tasks/sequences.py).
    """

    components: tuple[Component, ...]
    prior: tuple[tuple[str, float], ...] = (("a", 1.0),)
    window: int = 40
    k: int = 6
    offset: int = 40
    text_len: int = 250
    spurious: float = 0.0
    spurious_offset: int = 1
    spurious_operands: tuple[str, str] = ("a", "b")
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not self.components:
            problems.append("no task components")
        for c in self.components:
            if c.family not in vocab.FAMILIES:
                problems.append(f"unknown family {c.family!r}")
            elif c.family == "token" and c.operand is not None:
                problems.append("the token family takes no operand")
            elif c.operand is not None:
                composite = c.family in ("count_composite", "index_composite")
                valid = vocab.COMPOSITES if composite else vocab.TERMINALS
                if c.operand not in valid:
                    problems.append(f"operand {c.operand!r} is not valid for {c.family}")
                if c.answer is not None and (c.answer not in valid or c.answer == c.operand):
                    problems.append(f"answer operand {c.answer!r} of {c} must be another valid operand")
            if c.answer is not None and c.operand is None:
                problems.append(f"{c}: a relabelled answer needs a fixed operand (e.g. count:a@b)")
        total = sum(p for _, p in self.prior)
        if any(op not in vocab.TERMINALS for op, _ in self.prior):
            problems.append(f"prior names an operand outside a, b, c: {dict(self.prior)}")
        if any(p < 0 for _, p in self.prior) or abs(total - 1.0) > 1e-6:
            problems.append(f"prior must be non-negative and sum to 1 (sums to {total:g})")
        # Index answers are positions 1..text_len, each a number token.
        if not 2 <= self.text_len <= vocab.MAX_NUMBER:
            problems.append(f"text_len must be in 2..{vocab.MAX_NUMBER}, got {self.text_len}")
        families = {c.family for c in self.components}
        used = {"window": bool(families & set(COUNTING)), "offset": "token" in families}
        for name in ("window", "offset"):
            value = getattr(self, name)
            if used[name] and not 1 <= value <= self.text_len:
                problems.append(f"{name} must be in 1..text_len={self.text_len}, got {value}")
        if not 1 <= self.k <= vocab.MAX_NUMBER:
            problems.append(f"k must be in 1..{vocab.MAX_NUMBER}, got {self.k}")
        if not 0.0 <= self.spurious <= 1.0:
            problems.append(f"spurious fraction must be in [0, 1], got {self.spurious}")
        if self.spurious_offset < 0:
            problems.append(f"spurious offset must be >= 0, got {self.spurious_offset}")
        a, b = self.spurious_operands
        if a == b or a not in vocab.TERMINALS or b not in vocab.TERMINALS:
            problems.append(f"spurious operands must be two of a, b, c: {self.spurious_operands}")
        if self.spurious > 0 and any(c.family not in ("count", "index") for c in self.components):
            problems.append("the spurious feature is defined for the count and index families only")
        if self.spurious > 0 and self.spurious_offset == 0 and any(
            c.family == "index" for c in self.components
        ):
            problems.append("an index spurious feature needs an offset >= 1 (positions differ)")
        if problems:
            raise UsageError("invalid task: " + "; ".join(problems))

    # -- views ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return ",".join(str(c) for c in self.components)

    def replace(self, **changes) -> "TaskSpec":
        return dataclasses.replace(self, **changes)

    def fixed(self, component: Component) -> "TaskSpec":
        """This spec restricted to one component with a fixed operand (for evaluation)."""
        return self.replace(components=(component,))

    def eval_components(self) -> list[Component]:
        """The (family, operand) pairs an evaluation reports: fixed operands as given,
        prior-drawn ones expanded to every operand with non-zero prior mass."""
        out = []
        for c in self.components:
            if c.operand is not None or c.family == "token":
                out.append(c)
                continue
            ops = [op for op, p in self.prior if p > 0]
            if c.family in ("count_composite", "index_composite"):
                ops = [x + y for x in ops for y in ops]
            out.extend(Component(c.family, op) for op in ops)
        return out

    # -- JSON ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["components"] = [str(c) for c in self.components]
        d["prior"] = dict(self.prior)
        d["spurious_operands"] = list(self.spurious_operands)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TaskSpec":
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise WrapError(f"invalid task: unknown field(s) {sorted(unknown)}")
        problems = [f"field {key!r} must be {words}, got {d[key]!r}"[:160] for key, (ok, words) in FIELD_TYPES.items()
                    if key in d and not ok(d[key])]
        if "components" not in d:
            problems.insert(0, "field 'components' is missing")
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise WrapError(f"invalid task: {problems[0]}{more}")
        d["components"] = parse_components(",".join(d["components"]))
        d["prior"] = tuple(sorted(d.get("prior", {"a": 1.0}).items()))
        if "spurious_operands" in d:
            d["spurious_operands"] = tuple(d["spurious_operands"])
        return cls(**d)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    import math

    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _strings(v) -> bool:
    return isinstance(v, list | tuple) and all(isinstance(x, str) for x in v)


# what each field of a task read from a file (a checkpoint's metadata, a report) must hold
FIELD_TYPES = {
    "components": (lambda v: _strings(v) and len(v) > 0, "a non-empty list of strings"),
    "prior": (lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_number(x) for k, x in v.items()),
              "an object of operand: number"),
    "window": (_is_int, "an integer"), "k": (_is_int, "an integer"), "offset": (_is_int, "an integer"),
    "text_len": (_is_int, "an integer"), "spurious": (_is_number, "a number"),
    "spurious_offset": (_is_int, "an integer"), "spurious_operands": (_strings, "a list of strings"),
    "seed": (_is_int, "an integer"),
}


def parse_components(text: str) -> tuple[Component, ...]:
    """``"count:a,index"`` -> components. A composite operand (``aa``) selects the
    composite family, so ``count:aa`` means count_composite with operand aa."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise UsageError(f"invalid task {text!r}: empty component")
        head, at, answer = part.partition("@")
        family, colon, operand = head.partition(":")
        family = family.strip()
        if family not in vocab.FAMILIES:
            raise UsageError(
                f"unknown task family {family!r} in {text!r} (known: {', '.join(vocab.FAMILIES)})"
            )
        if colon and not operand.strip():
            raise UsageError(f"invalid task {text!r}: empty operand after {family}: (e.g. {family}:a)")
        operand = operand.strip() or None
        if operand is not None and len(operand) == 2 and family in COMPOSITE_FAMILIES:
            family = COMPOSITE_FAMILIES[family]
        out.append(Component(family, operand, answer.strip() if at else None))
    return tuple(out)


def parse_prior(text: str) -> tuple[tuple[str, float], ...]:
    """``"a=0.9,b=0.1"`` -> ``(("a", 0.9), ("b", 0.1))``; operands left out get 0."""
    prior = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        name = name.strip()
        try:
            if not eq:
                raise ValueError
            if name in prior:
                raise UsageError(f"invalid prior {text!r}: operand {name!r} is given twice")
            prior[name] = float(value)
        except ValueError:
            raise UsageError(f"invalid prior {text!r}: expected e.g. a=0.9,b=0.1") from None
        if not 0 <= prior[name] <= 1:  # nan and inf fail here too
            raise UsageError(f"invalid prior {text!r}: the weight of {name!r} must be a number in [0, 1]")
    return tuple(sorted(prior.items()))
