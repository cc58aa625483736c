"""Task specs for tests, from the CLI's short form plus explicit fields (validated)."""

from wrapcli.tasks.spec import TaskSpec, parse_components


def parse_task(text: str, **fields) -> TaskSpec:
    return TaskSpec(components=parse_components(text), **fields)
