"""One readable line for a bad config value, instead of jsonargparse's dump.

A wrong value deep in a config (``lr: fast``) makes jsonargparse print the whole usage (100 lines) and a tree
of every class the model or data module could have been, with the real problem at its deepest branch. The
parser below prints that branch only: the option's full name, the value given and the types it accepts.
``JSONARGPARSE_DEBUG=true`` still gives jsonargparse's own message, as a traceback.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import NoReturn

import yaml
from jsonargparse._common import debug_mode_active  # jsonargparse's own switch (JSONARGPARSE_DEBUG)
from lightning.pytorch.cli import LightningArgumentParser

_KEY = re.compile(r'Parser key "([^"]+)":\s*$')
_CLASS_NAME = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" -"))


def condense(message: str) -> tuple[str | None, str]:
    """The deepest failing option of a jsonargparse message and one line about it (``KEY: got VALUE; expected
    TYPES``).

    The message is a tree: ``Parser key "model":`` holds the errors of each type the value could be, one of
    which (``Problem with given class_path ...``) holds ``Parser key "optimizer":`` and so on. The deepest
    key is the option the user got wrong; its ancestors give its full name. A message with no such tree
    (an unknown option, a missing file) is returned as it is, with no option.
    """
    lines = message.splitlines()
    keys = [(i, _indent(line), m.group(1)) for i, line in enumerate(lines) if (m := _KEY.search(line))]
    if len(lines) < 4 or not keys:
        return None, message
    deepest = max(keys, key=lambda k: k[1])
    # The ancestors: the nearest key above at each smaller indentation.
    path, depth = [deepest[2]], deepest[1]
    for i, indent, key in reversed([k for k in keys if k[0] < deepest[0]]):
        if indent < depth:
            path.insert(0, key)
            depth = indent
    # Keys inside a class_path's arguments are relative to its init_args.
    option = ".init_args.".join(path)
    body = []
    for line in lines[deepest[0] + 1 :]:
        if line.strip() and _indent(line) <= deepest[1]:
            break
        body.append(line.strip().lstrip("- ").strip())
    # A class was chosen but an argument of it is wrong in itself ("Option 'x' is not accepted").
    for b, after in zip(body, body[1:]):
        if b.startswith("Problem with given class_path") and after and "Parser key" not in after:
            cls = b.split(" ")[-1].strip(":'")
            if unknown := re.fullmatch(r"Option '([^']+)' is not accepted", after):
                option = f"{option}.init_args.{unknown.group(1)}"
                return option, f"{option}: {cls} has no such argument"
            return option, f"{option} ({cls}): {after}"
    given = next((b.split(":", 1)[1].strip() for b in body if b.startswith("Given value:")), None)
    if given is not None:
        given = given.split(". Got value:")[0]
    elif simple := next((m for b in body if (m := re.fullmatch(r"Expected an? (.+?)\. Got value: (.*)", b))), None):
        body, given = [f"Expected {simple.group(1)}"], simple.group(2)
    subtypes = next((b.split(":", 1)[1].strip() for b in body if b.startswith("Subtypes:")), None)
    if subtypes:
        expected = ", ".join(_CLASS_NAME.sub(r"\1", t.strip()) for t in subtypes.strip("[]").split(", "))
        expected = f"one of: {expected}"
    else:
        expected = "; ".join(_CLASS_NAME.sub(r"\1", b.removeprefix("Expected ").removeprefix("a ")) for b in body
                             if b.startswith("Expected")) or "?"
    text = f"{option}: got {given!r}; expected {expected}" if given is not None else f"{option}: expected {expected}"
    if given == "None":
        text += (" (a null given for an option inside another on the command line reaches the parser as the text"
                 " 'None': write the value out, e.g. the list of levels, or set it to null in a YAML config)")
    return option, text


def where_set(option: str, command_line: list[str]) -> str | None:
    """Where ``option`` (``model.init_args.optimizer.init_args.lr``) got its value: "on the command line", or
    the last ``--config`` file that sets it, with the line; None when neither can be told."""
    path = [k for k in option.split(".") if k != "init_args"]
    for arg in command_line:
        name = arg.split("=", 1)[0]
        if name.startswith("--") and [k for k in name[2:].split(".") if k != "init_args"] == path:
            return "on the command line"
    configs = [v for flag, v in zip(command_line, command_line[1:]) if flag in ("--config", "-c")]
    configs += [a.split("=", 1)[1] for a in command_line if a.startswith("--config=")]
    found = None
    for config in configs:
        try:
            node = yaml.compose(Path(config).read_text())
        except (OSError, yaml.YAMLError):
            continue
        for key in path:
            node = _child(node, key)
            if node is None:
                break
        if node is not None:
            found = f"in {config}, line {node.start_mark.line + 1}"
    return found


def _child(node, key: str):
    """The value node of ``key`` in a YAML mapping node, looking inside its ``init_args`` too."""
    if not isinstance(node, yaml.MappingNode):
        return None
    children = {k.value: v for k, v in node.value}
    if key in children:
        return children[key]
    return _child(children.get("init_args"), key) if "init_args" in children else None


class ConciseArgumentParser(LightningArgumentParser):
    """LightningCLI's parser, printing one ``error:`` line (and where to find the options) instead of the
    usage and jsonargparse's type tree."""

    command_line: list[str] = []  # the arguments being parsed (set by the CLI), to say where a value came from

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or debug_mode_active():
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        option, text = condense(message)
        where = where_set(option, self.command_line) if option else None
        sys.stderr.write(f"error: {text}{f' ({where})' if where else ''}\n")
        sys.stderr.write(f"(options: {parser.prog.replace(' [options]', '')} --help; the parser's full message: "
                         "JSONARGPARSE_DEBUG=true)\n")
        self.exit(2)
