"""A Sphinx directive, ``berrymq-cli``, that writes the command-line reference from
``berrymq.cli.build_parser()`` at build time, so the page cannot drift from the code.

It walks the parser generically: every subcommand (at any depth), every positional
argument and option with its help, default and choices. A command added later, by the
core or by a plugin that extends the parser, appears without touching the docs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from berrymq.cli import build_parser

__all__ = ["Argument", "Command", "setup", "walk"]


@dataclass
class Argument:
    """One positional argument or option of a command."""

    names: str  # "URL" or "--format {dot,mermaid}"
    help: str


@dataclass
class Command:
    """One command: ``berrymq``, ``berrymq graph``, ..."""

    path: str
    help: str
    usage: str
    #: what ``--help`` says beyond the one line of ``help``: the description (when it is
    #: more than that line) and, for the top command, the epilog every command shares
    text: str = ""
    arguments: list[Argument] = field(default_factory=list)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    extras = []
    if action.choices is not None and action.metavar is not None:  # else the name shows them
        extras.append("one of " + ", ".join(str(c) for c in action.choices))
    default = action.default
    if (action.option_strings and default not in (None, False, argparse.SUPPRESS)
            and "default" not in text and action.nargs != 0):
        extras.append(f"default: {default}")
    if action.required and action.option_strings:
        extras.append("required")
    return "; ".join(part for part in (text, *extras) if part)


def _names(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    if not action.option_strings:
        return formatter._format_args(action, action.dest)
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = formatter._format_args(action, action.dest.upper())
    return ", ".join(f"{option} {metavar}" for option in action.option_strings)


def walk(parser: argparse.ArgumentParser, path: str | None = None, help: str = "") -> list[Command]:
    """Every command of ``parser``, depth first, in the order they were added."""
    top = path is None
    path = path or parser.prog
    help = help or parser.description or ""
    more = [parser.description or "", parser.epilog or ""] if top else [parser.description or ""]
    text = "\n\n".join(part.strip("\n") for part in more if part and part.strip() != help.strip())
    command = Command(path, help, parser.format_usage().strip(), text)
    below: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias
                    continue
                seen.add(id(sub))
                below += walk(sub, f"{path} {name}", helps.get(name, ""))
            continue
        command.arguments.append(Argument(_names(parser, action), _help(parser, action)))
    return [command, *below]


class CliReference(SphinxDirective):
    """``berrymq-cli``: the whole reference (no arguments, no content)."""

    def run(self) -> list[nodes.Node]:
        sections: list[nodes.Node] = []
        for command in walk(build_parser()):
            section = nodes.section(ids=[nodes.make_id(command.path)])
            section += nodes.title(text=command.path)
            if command.help:
                section += nodes.paragraph(text=command.help)
            section += nodes.literal_block(command.usage, command.usage, language="text")
            section += _paragraphs(command.text)
            if command.arguments:
                items = nodes.definition_list()
                for argument in command.arguments:
                    item = nodes.definition_list_item()
                    term = nodes.term()
                    term += nodes.literal(text=argument.names)
                    item += term
                    definition = nodes.definition()
                    definition += nodes.paragraph(text=argument.help)
                    item += definition
                    items += item
                section += items
            self.state.document.note_implicit_target(section)
            sections.append(section)
        return sections


def _paragraphs(text: str) -> list[nodes.Node]:
    """``text`` as ``--help`` shows it (berrymq.cli.HelpFormatter): a paragraph filled,
    an indented one (examples) kept line for line."""
    shown: list[nodes.Node] = []
    for paragraph in text.split("\n\n") if text else []:
        lines = paragraph.splitlines()
        if any(line.startswith(" ") for line in lines[1:]):
            shown.append(nodes.literal_block(paragraph, paragraph, language="text"))
        else:
            shown.append(nodes.paragraph(text=" ".join(line.strip() for line in lines)))
    return shown


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("berrymq-cli", CliReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
