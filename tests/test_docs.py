"""The documentation's ``flare`` examples stay true to the command line, and README stays short.

Every code-block line of README.md and docs/*.md that runs ``flare`` is parsed the way click
parses it (the command path, every option, Choice and range values, how many arguments)
without touching the file system: click's parser gives the raw values, and only types that
do not look at paths are converted (InputPath checks existence on conversion, and an
example's paths are made up). A renamed option or command breaks this test, not a reader.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from flare.cli import cli
from flare.runtime.foundation.options import CommaList, DeviceType

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300

#: Types whose conversion only looks at the text, so an example's value can be checked here.
_TEXT_ONLY = (click.Choice, click.types.IntParamType, click.types.FloatParamType, click.types.BoolParamType,
              click.types.StringParamType, DeviceType)
#: Fenced-block languages whose lines are shell commands ("" for a fence that names none).
_SHELL = {"", "sh", "bash", "shell", "console"}
#: A shell line that may run flare: cheap filter before splitting it into commands.
_RUNS_FLARE = re.compile(r"(^|[\s;&|/])flare(\s|$)")


def code_lines(text: str) -> list[tuple[int, str]]:
    """The logical lines of a Markdown text's code blocks, each with the line number it starts on.

    Indented blocks (four spaces, opened after a blank line) and fenced blocks of shell, or of
    no stated language, count; a ``text`` or ``python`` block is not a command line. A line
    ending in a backslash is joined with the next, as the shell would.
    """
    lines: list[tuple[int, str]] = []
    fence: str | None = None  # the open fence's language
    indented = False
    previous_blank = True
    pending: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        blank = not line.strip()
        if line.lstrip().startswith("```"):
            fence = line.strip().strip("`").strip() if fence is None else None
            indented, code = False, None
        elif fence is not None:
            code = line if fence in _SHELL else None
        elif line.startswith("    ") and not blank and (previous_blank or indented):
            indented, code = True, line
        else:
            indented = indented and blank
            code = None
        previous_blank = blank
        if code is None or (blank and pending is None):
            continue
        start, joined = pending if pending is not None else (number, "")
        joined = f"{joined} {code.strip()}".strip()
        if joined.endswith("\\"):
            pending = (start, joined[:-1])
        else:
            pending = None
            lines.append((start, joined))
    return lines


def strip_comment(line: str) -> str:
    """``line`` without an unquoted shell comment (a ``#`` that starts a word)."""
    quote = None
    escaped = False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def flare_commands(line: str) -> list[list[str]]:
    """The arguments after ``flare`` of every command in the shell ``line`` that runs it
    (``flare ...`` or ``.venv/bin/flare ...``, alone or chained with ``&&``, ``;``, ``|``)."""
    line = strip_comment(line)
    if not _RUNS_FLARE.search(line):
        return []
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = ""
    commands: list[list[str]] = []
    words: list[str] = []
    for token in [*lexer, ";"]:
        if set(token) <= set(";&|"):
            while words and re.fullmatch(r"\w+=\S*", words[0]):  # VAR=value before the command
                words.pop(0)
            if words and (words[0] == "flare" or words[0].endswith("/flare")):
                commands.append(words[1:])
            words = []
        else:
            words.append(token)
    return commands


def _text_only(kind: click.ParamType) -> bool:
    """Whether converting a value of ``kind`` leaves the file system alone."""
    if isinstance(kind, CommaList):
        return _text_only(kind.item)
    return isinstance(kind, _TEXT_ONLY)


def problems(args: list[str]) -> list[str]:
    """What click would refuse in ``flare ARGS`` before running it; empty if nothing."""
    command: click.Command = cli
    ctx = click.Context(cli, info_name="flare")
    while True:
        try:
            values, rest, _ = command.make_parser(ctx).parse_args(list(args))
        except click.UsageError as exc:
            return [f"{ctx.command_path}: {exc.format_message()}"]
        params = command.get_params(ctx)
        given = {p.name: values[p.name] for p in params if p.name in values and not p.value_is_missing(values[p.name])}
        if any(p.is_eager and p.name in given for p in params):
            return []  # --help or --version: nothing else is looked at
        if not isinstance(command, click.Group):
            break
        if not rest:
            return [f"{ctx.command_path}: no command given"]
        name, args = rest[0], rest[1:]
        sub = command.get_command(ctx, name)
        if sub is None:
            return [f"{ctx.command_path}: no such command {name!r}"]
        command, ctx = sub, click.Context(sub, parent=ctx, info_name=name)
    found = [f"{ctx.command_path}: unexpected extra argument(s) {' '.join(rest)}"] if rest else []
    for param in params:
        label = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
        if param.name not in given:
            default = param.get_default(ctx)
            if param.required and (default is None or param.value_is_missing(default)):
                found.append(f"{ctx.command_path}: missing {label}")
        elif _text_only(param.type):
            try:
                param.type_cast_value(ctx, given[param.name])
            except click.BadParameter as exc:
                found.append(f"{ctx.command_path}: {label}: {exc.format_message()}")
    return found


def doc_examples() -> list[tuple[str, list[str]]]:
    """(``file:line``, arguments) of every ``flare`` command in the documentation's code blocks."""
    return [(f"{doc.relative_to(ROOT)}:{number}", args)
            for doc in DOCS for number, line in code_lines(doc.read_text(encoding="utf-8"))
            for args in flare_commands(line)]


def test_every_documented_command_line_parses() -> None:
    examples = doc_examples()
    bad = [f"{where}: flare {shlex.join(args)}: {problem}" for where, args in examples for problem in problems(args)]
    assert not bad, "\n".join(bad)


def test_every_command_has_an_example_in_readme() -> None:
    readme = ROOT / "README.md"
    shown = {tuple(args[:2]) for _, line in code_lines(readme.read_text(encoding="utf-8"))
             for args in flare_commands(line)}
    ctx = click.Context(cli, info_name="flare")
    missing = []
    for name in cli.list_commands(ctx):
        sub = cli.get_command(ctx, name)
        paths = [(name, leaf) for leaf in sub.list_commands(ctx)] if isinstance(sub, click.Group) else [(name,)]
        missing += [" ".join(path) for path in paths if not any(tuple(s[:len(path)]) == path for s in shown)]
    assert not missing, f"README shows no example of: {', '.join(missing)}"


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert f"    {ci}\n" in (ROOT / "README.md").read_text(encoding="utf-8"), "README's command 2 differs from .ci/run"


def test_readme_is_short() -> None:
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


@pytest.mark.parametrize("line, expected", [
    ("flare triage survey/ --model bundle --out r.csv --treshold 0.6", "No such option '--treshold'"),
    ("flare info bundle --backend tpu", "'tpu' is not one of"),
    ("flare bench run --out b --backends cpu,tpu", "'tpu' is not one of"),
    ("flare data split sky/hr --out split.csv --val 1.5", "not in the range"),
    ("flare export classifier --out bundle", "missing RUN_OR_NAME"),
    ("flare info bundle other", "unexpected extra argument(s) other"),
    ("flare triage survey/ --model bundle", "missing --out"),
    ("flare export clasifier run --out bundle", "no such command 'clasifier'"),
    ("flare classify bundle --top", "requires an argument"),
])
def test_a_wrong_example_is_reported(line: str, expected: str) -> None:
    (args,) = flare_commands(line)
    found = problems(args)
    assert any(expected in problem for problem in found), found


def test_paths_need_not_exist_and_help_stops_checking() -> None:
    assert problems(["enhance", "/no/such/bundle", "/no/such.fits", "--out", "/no/out", "--png"]) == []
    assert problems(["triage", "--help"]) == []
    assert problems(["--version"]) == []


def test_code_lines_are_found_and_joined() -> None:
    text = ("Prose that mentions flare info bundle.\n\n"
            "    flare data synth --out sky   # a comment with --bad\n"
            "    flare triage s --model b \\\n"
            "        --out r.csv\n\n"
            "```\n"
            "python3 -m venv .venv && .venv/bin/flare demo; echo '# not a comment'\n"
            "```\n"
            "```text\n"
            "flare what the picture's box says\n"
            "```\n"
            "- a list item\n"
            "    flare continuation --of the item, not code\n")
    commands = [args for _, line in code_lines(text) for args in flare_commands(line)]
    assert commands == [["data", "synth", "--out", "sky"], ["triage", "s", "--model", "b", "--out", "r.csv"],
                        ["demo"]]
