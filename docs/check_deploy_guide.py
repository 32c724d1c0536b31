"""
Check the az commands of docs/deploy-azure.md against the Azure CLI's own help.

Every `az ...` command in the guide's shell code blocks (backslash-continued lines
joined, comments left out, commands inside $(...) included) is split into its
command path, the words before the first option, and its options. `az <path>
--help` runs once per distinct path, and the script reports every option the help
does not list, every path az does not know, and every command or option the help
marks as deprecated. It prints what it checked, and exits with 1 on any problem.
Nothing is sent to Azure: help needs no sign-in.

Run it with a current Azure CLI from PyPI in a throwaway virtual environment:

    python3 -m venv /tmp/azcli && /tmp/azcli/bin/pip install azure-cli && python3 docs/check_deploy_guide.py --az /tmp/azcli/bin/az

The Managed Redis commands (az redisenterprise) come from a CLI extension, which
`/tmp/azcli/bin/az extension add --name redisenterprise` installs (from Azure,
not PyPI); without it they are reported as unknown. Without --az the script runs
the az found on PATH. --guide checks another file.
"""  # noqa: E501 - the command above is one line, to be copied whole

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

GUIDE = Path(__file__).resolve().with_name("deploy-azure.md")
# Fenced blocks read as shell: untagged ones and these.
SHELL_LANGUAGES = {"", "sh", "bash", "shell", "console", "zsh"}
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
NAME = r"-{1,2}[A-Za-z0-9][\w-]*"  # --resource-group, -g, --deploymentTag
OPTION = re.compile(rf"^{NAME}$")
# In an Arguments section of a help: "    --name -n  [Required] : The name ..."
OPTION_LINE = re.compile(rf"^ {{4}}({NAME}(?: +{NAME})*)(.*)$")
DEPRECATED_OPTION = re.compile(rf"Option '({NAME})' has been deprecated")
DEPRECATED_COMMAND = re.compile(r"This command (?:group )?has been deprecated")
NEEDS_EXTENSION = re.compile(r"requires the extension ([\w-]+)")


@dataclass(frozen=True)
class Command:
    """One az command of the guide."""

    line: int  # where it starts in the guide
    text: str  # as written, continuation lines joined
    path: tuple[str, ...]  # ("webapp", "create")
    options: tuple[str, ...]  # ("--resource-group", "--name", ...)

    @property
    def name(self) -> str:
        return " ".join(("az", *self.path))


@dataclass(frozen=True)
class Help:
    """What `az <path> --help` says about a command."""

    known: bool
    options: frozenset[str] = frozenset()
    deprecated_options: frozenset[str] = frozenset()
    deprecated: bool = False
    error: str = ""


# Reading the guide


def shell_blocks(markdown: str) -> list[tuple[int, list[str]]]:
    """The fenced shell code blocks: (line number of the first line, lines)."""
    blocks: list[tuple[int, list[str]]] = []
    fence = ""
    keep = False
    body: list[str] = []
    start = 0
    for number, line in enumerate(markdown.splitlines(), start=1):
        if not fence:
            match = FENCE.match(line)
            if match:
                fence = match["fence"]
                info = match["info"].strip().split(maxsplit=1)
                keep = (info[0] if info else "") in SHELL_LANGUAGES
                body, start = [], number + 1
        elif line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            if keep:
                blocks.append((start, body))
            fence = ""
        else:
            body.append(line)
    return blocks


def strip_comment(line: str) -> str:
    """The line without its shell comment: a # that starts a word, outside quotes."""
    quote = ""
    escaped = False
    for index, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line


def logical_lines(first: int, lines: Sequence[str]) -> list[tuple[int, str]]:
    """Lines with their backslash continuations joined, comments left out."""
    joined: list[tuple[int, str]] = []
    pending: list[str] = []
    start = first
    for number, raw in enumerate(lines, start=first):
        if not pending:
            start = number
        line = strip_comment(raw)
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line.strip())
        text = " ".join(part for part in pending if part)
        pending = []
        if text:
            joined.append((start, text))
    if pending:
        joined.append((start, " ".join(part for part in pending if part)))
    return joined


def simple_commands(line: str) -> list[str]:
    """
    The simple commands of a shell line: split at ; | & ( ) and newlines outside
    quotes, with each $(...) substitution taken out as a command of its own (and
    left as a placeholder word in the one around it).
    """
    done: list[str] = []
    # One frame per command substitution being read: its commands so far, the
    # current command's text, and its depth of plain parentheses.
    frames: list[tuple[list[str], list[str], list[int]]] = [([], [], [0])]
    quotes: list[str] = []  # open quotes, innermost last ('"' may hold $(...))
    index = 0

    def finish(frame: tuple[list[str], list[str], list[int]]) -> None:
        text = "".join(frame[1]).strip()
        if text:
            frame[0].append(text)
        frame[1].clear()

    while index < len(line):
        char = line[index]
        _, current, depth = frames[-1]
        in_single = bool(quotes) and quotes[-1] == "'"
        in_double = bool(quotes) and quotes[-1] == '"'
        if in_single:
            current.append(char)
            if char == "'":
                quotes.pop()
        elif char == "\\" and index + 1 < len(line):
            current.append(line[index : index + 2])
            index += 1
        elif line.startswith("$(", index) and not line.startswith("$((", index):
            frames.append(([], [], [0]))
            quotes.append(")")  # the substitution's own context
            index += 1
        elif in_double:
            current.append(char)
            if char == '"':
                quotes.pop()
        elif char in "'\"":
            current.append(char)
            quotes.append(char)
        elif char == ")" and quotes and quotes[-1] == ")" and depth[0] == 0:
            finish(frames[-1])
            inner = frames.pop()
            quotes.pop()
            done.extend(inner[0])
            frames[-1][1].append("$(...)")
        elif char in ";|&\n`":
            finish(frames[-1])
        elif char == "(":
            depth[0] += 1
            finish(frames[-1])
        elif char == ")":
            depth[0] = max(0, depth[0] - 1)
            finish(frames[-1])
        else:
            current.append(char)
        index += 1
    while frames:
        frame = frames.pop()
        finish(frame)
        done.extend(frame[0])
    return done


def parse_command(line: int, text: str) -> Command | None:
    """The az command of a simple command, or None when it is not one."""
    words = shlex.split(text, posix=True)
    while words and ASSIGNMENT.match(words[0]):
        words.pop(0)
    if not words or words[0] != "az":
        return None
    path: list[str] = []
    options: list[str] = []
    for word in words[1:]:
        if word.startswith("-") and len(word) > 1:
            name = word.split("=", 1)[0]
            if OPTION.match(name) and name not in options:
                options.append(name)
        elif not options:
            path.append(word)
    return Command(line, " ".join(words), tuple(path), tuple(options))


def extract_commands(markdown: str) -> list[Command]:
    """Every az command in the shell code blocks of a Markdown text."""
    found: list[Command] = []
    for first, lines in shell_blocks(markdown):
        for line, text in logical_lines(first, lines):
            for simple in simple_commands(text):
                try:
                    command = parse_command(line, simple)
                except ValueError as exc:  # unbalanced quotes
                    if re.search(r"(^|\s)az\s", simple):
                        message = f"line {line}: cannot read {simple!r}: {exc}"
                        raise ValueError(message) from exc
                    continue
                if command is not None:
                    found.append(command)
    return found


# Reading az's help


def parse_help(text: str) -> Help:
    """The options a command's help lists, and what it marks as deprecated."""
    lines = text.splitlines()
    if "Command" not in (line.rstrip() for line in lines):
        return Help(known=False, error="not a command (a command group?)")
    options: set[str] = set()
    deprecated: set[str] = set()
    section = ""
    command_text: list[str] = []
    for line in lines:
        if line and not line[0].isspace():
            section = line.strip()
            continue
        if section == "Command":
            command_text.append(line)
        if not section.endswith("Arguments"):
            continue
        match = OPTION_LINE.match(line)
        if match:
            names = match[1].split()
            options.update(names)
            if "[Deprecated]" in match[2].split(":", 1)[0]:
                deprecated.update(names)
    flat = " ".join(text.split())
    deprecated.update(DEPRECATED_OPTION.findall(flat))
    is_deprecated = bool(DEPRECATED_COMMAND.search(" ".join(command_text)))
    return Help(True, frozenset(options), frozenset(deprecated), is_deprecated)


def run_az(az: str, *words: str) -> subprocess.CompletedProcess[str]:
    """Run az with these words, quietly and without asking anything."""
    env = dict(os.environ)
    env.update(
        {
            "AZURE_CORE_COLLECT_TELEMETRY": "false",
            "AZURE_CORE_NO_COLOR": "true",
            # A command of a missing extension is reported, not installed.
            "AZURE_EXTENSION_USE_DYNAMIC_INSTALL": "no",
            "COLUMNS": "200",
        }
    )
    return subprocess.run(  # noqa: S603 - az and the guide's own words
        [az, *words],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )


def az_help(az: str, path: Sequence[str]) -> Help:
    """Run `az <path> --help` and read it."""
    try:
        result = run_az(az, *path, "--help")
    except subprocess.TimeoutExpired:
        return Help(known=False, error="az --help did not answer within 300 s")
    if result.returncode != 0:
        said = result.stderr.strip().splitlines()
        message = said[0].strip() if said else f"exit status {result.returncode}"
        extension = NEEDS_EXTENSION.search(message)
        if extension:
            message = (
                f"needs the {extension[1]} extension: "
                f"{az} extension add --name {extension[1]}"
            )
        elif path and path[0] == "redisenterprise":
            message += f" (an extension: {az} extension add --name redisenterprise)"
        return Help(known=False, error=message)
    return parse_help(result.stdout)


# Comparing


def problems(command: Command, help_: Help) -> list[str]:
    """What is wrong with one command, given its help."""
    where = f"line {command.line}: {command.name}"
    if not help_.known:
        return [f"{where}: unknown to az: {help_.error}"]
    found: list[str] = []
    if help_.deprecated:
        found.append(f"{where}: deprecated")
    for option in command.options:
        if option not in help_.options:
            found.append(f"{where}: {option} is not an option of this command")
        elif option in help_.deprecated_options:
            found.append(f"{where}: {option} is deprecated")
    return found


def check(
    commands: Iterable[Command], get_help: Callable[[tuple[str, ...]], Help]
) -> list[str]:
    """Every problem of the commands; help is asked once per command path."""
    helps: dict[tuple[str, ...], Help] = {}
    found: list[str] = []
    for command in commands:
        if command.path not in helps:
            helps[command.path] = get_help(command.path)
        found.extend(problems(command, helps[command.path]))
    return found


def version(az: str) -> str:
    """The azure-cli version of this az."""
    return run_az(
        az, "version", "--output", "tsv", "--query", '"azure-cli"'
    ).stdout.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--az", help="the az to ask (default: the one on PATH)")
    parser.add_argument("--guide", type=Path, default=GUIDE, help="the Markdown file")
    args = parser.parse_args(argv)
    az = args.az or shutil.which("az")
    if not az:
        print("no az on PATH; give one with --az (see this script's docstring)")
        return 1
    commands = extract_commands(args.guide.read_text(encoding="utf-8"))
    if not commands:
        print(f"no az commands found in {args.guide}")
        return 1
    print(f"{args.guide}: {len(commands)} az commands; azure-cli {version(az)} at {az}")

    def get_help(path: tuple[str, ...]) -> Help:
        help_ = az_help(az, path)
        state = "ok" if help_.known else "unknown"
        print(f"  az {' '.join(path)} --help: {state}")
        return help_

    found = check(commands, get_help)
    for command in commands:
        options = " ".join(command.options) or "(no options)"
        print(f"  line {command.line}: {command.name} {options}")
    if found:
        print(f"{len(found)} problems:")
        for problem in found:
            print(f"  {problem}")
        return 1
    print("every command is known to az, and every option is in its help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
