"""The README's tables say what the CLI and the Makefile really do: every `clickstream` command
(and no other) is in the table of commands, with options the command has; every make target is
in the table of make targets, and `make up` / `make test` run the quick start's two lines."""

from __future__ import annotations

import re
from pathlib import Path

import click

from clickstream.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def table_cells(text: str) -> list[str]:
    """The first cell of each row of the markdown tables in ``text`` (header rows left out)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    rows = [line for i, line in enumerate(lines) if not (i + 1 < len(lines) and
            lines[i + 1].startswith("|---")) and not line.startswith("|---")]  # fmt: skip
    return [re.split(r"(?<!\\)\|", row)[1] for row in rows]


def leaves(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], click.Command]:
    found: dict[tuple[str, ...], click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= leaves(command, (*prefix, name))
        else:
            found[(*prefix, name)] = command
    return found


COMMANDS = leaves(cli)


def documented() -> dict[tuple[str, ...], list[str]]:
    """Command path -> the options its README row names."""
    found: dict[tuple[str, ...], list[str]] = {}
    for cell in table_cells(section("Commands")):
        for span in re.findall(r"`([^`]+)`", cell):
            words = span.split()
            if words[0] == "clickstream":
                words = words[1:]
            path: tuple[str, ...] = ()
            node: click.Command = cli
            for word in words:
                if not isinstance(node, click.Group) or word not in node.commands:
                    break
                node = node.commands[word]
                path = (*path, word)
            found[path] = re.findall(r"--[a-z][a-z-]*", span)
    return found


def test_every_command_is_in_the_readme_and_no_other() -> None:
    assert set(documented()) == set(COMMANDS)


def test_the_options_in_the_readme_exist() -> None:
    for path, options in documented().items():
        names = {o for p in COMMANDS[path].params for o in (*p.opts, *p.secondary_opts)}
        assert set(options) <= names, f"clickstream {' '.join(path)}: {set(options) - names}"


def make_targets() -> dict[str, list[str]]:
    """Makefile target -> its recipe lines."""
    targets: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if match := re.match(r"^([a-z][a-z-]*):(?!=)", line):
            current = targets.setdefault(match.group(1), [])
        elif line.startswith("\t") and current is not None:
            current.append(line.strip())
        elif not line.startswith("\t"):
            current = None if line and not line.startswith("#") else current
    return targets


def test_every_make_target_is_in_the_readme_and_no_other() -> None:
    cells = table_cells(section("Development"))
    readme = {m.group(1) for cell in cells if (m := re.fullmatch(r"\s*`make (\S+)`\s*", cell))}
    assert readme == set(make_targets())


def test_make_up_and_test_run_the_quick_start_lines() -> None:
    blocks = re.findall(r"```sh\n(.+?)\n```", section("Quick start"))
    targets = make_targets()
    assert targets["up"] == [blocks[0]]
    assert targets["test"] == [blocks[1]]
