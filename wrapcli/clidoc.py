"""The command reference, docs/cli.md, generated from the commands' own options and help
(``python -m wrapcli.clidoc > docs/cli.md``); a test fails when the file is stale."""

from __future__ import annotations


def markdown() -> str:
    from wrapcli.cli import RENAMED, command_tree

    group = command_tree()
    out = ["# Command reference", "",
           "Generated from the commands' `--help` by `python -m wrapcli.clidoc > docs/cli.md`; do not edit.",
           "Exit codes: 0 success, 1 runtime or data error, 2 usage error, 3 `compare --fail-on` matched.", "",
           "## wrapcli", "", " ".join(group.help.split()), "", *_table(group.params), ""]
    for name, cmd in group.commands.items():
        args = " ".join(p._usage_display_name() for p in cmd.params if not _is_option(p))
        out += [f"## wrapcli {name}", "", f"`wrapcli {name} [OPTIONS] {args}`".replace("  ", " ").replace(" `", "`"), "",
                cmd.help.strip(), "", *_table(cmd.params), ""]
        examples = _examples(cmd.epilog or "")
        if examples:
            out += ["```sh", *examples, "```", ""]
    out += _option_names(group)
    out += ["## Renamed options", "", "One name per concept across commands; the old spelling still works for one release, "
            "with a one-line note on stderr.", "", "| command | old | now |", "| --- | --- | --- |",
            *[f"| {cmd} | `{old}` | `{new}` |" for (cmd, old), new in RENAMED.items()], ""]
    return "\n".join(out).rstrip() + "\n"


def option_names(group) -> dict[str, dict]:
    """Every visible option name: the commands that take it and, where it takes a fixed set
    of values, that set (one name, one meaning: a test checks each set is the same in every
    command)."""
    import typing

    names: dict[str, dict] = {}
    for cmd_name, cmd in group.commands.items():
        for p in cmd.params:
            if not _is_option(p) or getattr(p, "hidden", False):
                continue
            row = names.setdefault(p.opts[-1], {"commands": [], "choices": set()})
            row["commands"].append(cmd_name)
            annotation = p.type_descriptor.annotation
            if typing.get_origin(annotation) is typing.Union:  # Optional[Literal[...]]
                annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
            if typing.get_origin(annotation) is typing.Literal:
                row["choices"].add(typing.get_args(annotation))
    return dict(sorted(names.items()))


def _option_names(group) -> list[str]:
    rows = [f"| `{name}` | {', '.join(' / '.join(c) for c in sorted(row['choices'])) or '–'} | {', '.join(row['commands'])} |"
            for name, row in option_names(group).items() if len(row["commands"]) > 1]
    return ["## Option names", "", "Each option shared by several commands, the values it takes and where; a name "
            "means one thing everywhere.", "", "| option | values | commands |", "| --- | --- | --- |", *rows, ""]


def _examples(epilog: str) -> list[str]:
    """The example commands of a help epilog, each with its continuation lines (a line
    ending in a backslash goes on in the next)."""
    out, going_on = [], False
    for line in epilog.splitlines():
        text = line.strip()
        if text.startswith("wrapcli") or (going_on and text):
            out.append(("    " if going_on else "") + text)
            going_on = text.endswith("\\")
        else:
            going_on = False
    return out


def _is_option(param) -> bool:
    return param.param_type_name == "option"


def _table(params) -> list[str]:
    rows = ["| option | default | meaning |", "| --- | --- | --- |"]
    for p in params:
        if getattr(p, "hidden", False):
            continue
        names = (
            ", ".join(f"`{o}`" for o in [*p.opts, *getattr(p, "secondary_opts", [])]) if _is_option(p) else f"`{p.name.upper()}`"
        )
        if p.required:
            default = "required"
        elif getattr(p, "is_flag", False):
            default = "on" if p.default else "off"
        elif p.default is None or p.default == ():
            default = "–"
        else:
            default = f"`{p.default}`"
        text = " ".join((getattr(p, "help", None) or "").split()).replace("|", "\\|")
        rows.append(f"| {names} | {default} | {text} |")
    return rows


if __name__ == "__main__":
    print(markdown(), end="")
