"""``swarmapply completion``: print a shell completion script for bash, zsh or fish.

The script is generated from the command line parser itself, so it offers exactly the
commands and options this version has: command names, each command's options, the values of
options with fixed choices (``-o``, ``--cascade``), file names after ``-f``, and kind words
(``job``, ``jobs``, ``no``...) as the first argument of ``get``, ``describe``, ``delete`` and
``explain``.

What it does not do: it never runs ``swarmapply`` or reads the store while completing, so it
completes no object names; and it is a snapshot: after an upgrade, load it again.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from swarmapply.api.kinds import KINDS
from swarmapply.cli.context import Context

EXAMPLES = """install:
  bash   add to ~/.bashrc:                 source <(swarmapply completion bash)
  zsh    add to ~/.zshrc, after compinit:  source <(swarmapply completion zsh)
         or save it as _swarmapply in a directory of $fpath
  fish   swarmapply completion fish > ~/.config/fish/completions/swarmapply.fish

examples:
  swarmapply completion bash > /etc/bash_completion.d/swarmapply
  source <(swarmapply completion bash)
"""

#: Commands whose first argument is a kind word.
KIND_COMMANDS = ("get", "describe", "delete", "explain")

#: What may appear unquoted in a generated script (option strings, choices, kind words).
_SAFE_WORD = re.compile(r"[A-Za-z0-9_.:/@+,-]+")


@dataclass
class CommandSpec:
    """What completion needs to know about one command (or, with name ``""``, the top level).

    Attributes:
        name: The command name; empty for the options before a command.
        help: The one-line help of the command.
        options: Every option string (``-o``, ``--output``...).
        valued: The option strings that take a value.
        choices: Option string -> the values it accepts, for options with fixed choices.
        files: Option strings whose value is a path.
        groups: Each option's strings (short and long form) with its help text.
        words: What the first positional argument may be (kind words, choices).
    """

    name: str
    help: str = ""
    options: list[str] = field(default_factory=list)
    valued: list[str] = field(default_factory=list)
    choices: dict[str, list[str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    groups: list[tuple[list[str], str]] = field(default_factory=list)
    words: list[str] = field(default_factory=list)


def kind_words() -> list[str]:
    """Every word naming a kind: singular, plural and short names, in registry order."""
    words = (w for k in KINDS.values() for w in (k.singular, k.plural, *k.short_names))
    return list(dict.fromkeys(words))


def _safe(words: Iterable[object]) -> list[str]:
    return [str(w) for w in words if _SAFE_WORD.fullmatch(str(w))]


def _one_line(text: str | None) -> str:
    return " ".join((text or "").replace("%%", "%").split())


def _spec(name: str, parser: argparse.ArgumentParser, help_text: str) -> CommandSpec:
    spec = CommandSpec(name, _one_line(help_text))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        strings = _safe(action.option_strings)
        if not strings:
            if action.choices is not None and not spec.words:
                spec.words = _safe(action.choices)
            continue
        spec.options.extend(strings)
        spec.groups.append(
            (strings, _one_line(action.help if isinstance(action.help, str) else ""))
        )
        if action.nargs == 0:
            continue
        spec.valued.extend(strings)
        if action.choices is not None:
            for option in strings:
                spec.choices[option] = _safe(action.choices)
        elif action.dest == "filename":
            spec.files.extend(strings)
    if name in KIND_COMMANDS:
        spec.words = kind_words()
    return spec


def command_specs() -> list[CommandSpec]:
    """The top level (name ``""``) and every command, read from the real parser."""
    from swarmapply.cli.main import build_parser  # here: main imports this module

    parser = build_parser()
    specs = [_spec("", parser, parser.description or "")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if _SAFE_WORD.fullmatch(name):
                    specs.append(_spec(name, sub, helps.get(name, "")))
    by_name = {spec.name: spec for spec in specs}
    # ``swarmapply -f PATH`` is apply's shorthand: offer apply's file options at the top.
    top, apply = specs[0], by_name.get("apply")
    if apply is not None:
        for option in ("-f", "--filename", "-R", "--recursive"):
            if option in apply.options and option not in top.options:
                top.options.append(option)
                if option in apply.valued:
                    top.valued.append(option)
                if option in apply.files:
                    top.files.append(option)
    wait = by_name.get("wait")
    if wait is not None and "--for" in wait.valued:  # its value is parsed, not a choice
        wait.choices["--for"] = ["phase=", "condition=", "delete"]
    return specs


def _case_function(name: str, entries: dict[str, list[str]], default: list[str]) -> str:
    """A shell function printing the words for its first argument (bash and zsh alike)."""
    lines = [f"{name}() {{", '    case "$1" in']
    for key, words in entries.items():
        if words != default:
            lines.append(f'        "{key}") echo {shlex.quote(" ".join(words))} ;;')
    lines.append(f"        *) echo {shlex.quote(' '.join(default))} ;;")
    lines += ["    esac", "}"]
    return "\n".join(lines)


def _shared_functions(specs: list[CommandSpec], prefix: str) -> str:
    """The data functions both the bash and the zsh script use."""
    top = specs[0]
    commands = [s for s in specs if s.name]
    choices = {f"{s.name}:{o}": c for s in specs for o, c in s.choices.items()}
    files = {f"{s.name}:{o}": ["file"] for s in specs for o in s.files}
    functions = [
        _case_function(f"{prefix}_options", {s.name: s.options for s in commands}, top.options),
        _case_function(f"{prefix}_valued", {s.name: s.valued for s in commands}, top.valued),
        _case_function(f"{prefix}_words", {s.name: s.words for s in commands}, []),
        _case_function(f"{prefix}_choices", {**choices, **files}, []),
    ]
    names = " ".join(s.name for s in commands)
    functions.insert(0, f"{prefix}_commands() {{\n    echo {shlex.quote(names)}\n}}")
    return "\n\n".join(functions)


BASH = r"""# bash completion for swarmapply, generated by `swarmapply completion bash`.
# Install: source <(swarmapply completion bash)

@FUNCTIONS@

_swarmapply() {
    local cur prev w cmd="" valued choices
    local -i i npos=0
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    # bash splits --opt=value at "=": complete the value of --opt
    if [[ $cur == "=" ]]; then
        cur=""
    elif [[ $prev == "=" ]]; then
        prev="${COMP_WORDS[COMP_CWORD-2]}"
    fi
    valued=" $(_swarmapply_valued "") "
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        if [[ $valued == *" $w "* || $w == "=" ]]; then
            i+=1
            [[ ${COMP_WORDS[i]} == "=" ]] && i+=1
        elif [[ $w == -* ]]; then
            :
        elif [[ -z $cmd ]]; then
            cmd="$w"
            valued=" $(_swarmapply_valued "$cmd") "
        else
            npos+=1
        fi
    done
    if [[ $valued == *" $prev "* ]]; then
        choices="$(_swarmapply_choices "$cmd:$prev")"
        if [[ $choices == file ]]; then
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$choices" -- "$cur"))
        fi
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_swarmapply_options "$cmd")" -- "$cur"))
    elif [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$(_swarmapply_commands)" -- "$cur"))
    elif ((npos == 0)); then
        COMPREPLY=($(compgen -W "$(_swarmapply_words "$cmd")" -- "$cur"))
    fi
    return 0
}

complete -F _swarmapply swarmapply
"""

ZSH = r"""#compdef swarmapply
# zsh completion for swarmapply, generated by `swarmapply completion zsh`.
# Install: source <(swarmapply completion zsh) after compinit in ~/.zshrc,
# or save this output as _swarmapply in a directory of $fpath.

@FUNCTIONS@

_swarmapply() {
    local cur prev w cmd="" valued choices
    integer i npos=0
    cur=${words[CURRENT]}
    prev=${words[CURRENT-1]}
    valued=" $(_swarmapply_valued "") "
    for ((i = 2; i < CURRENT; i++)); do
        w=${words[i]}
        if [[ $valued == *" $w "* ]]; then
            i+=1
        elif [[ $w == -* ]]; then
            :
        elif [[ -z $cmd ]]; then
            cmd=$w
            valued=" $(_swarmapply_valued "$cmd") "
        else
            npos+=1
        fi
    done
    if [[ $cur == -*=* ]]; then
        choices=$(_swarmapply_choices "$cmd:${cur%%=*}")
        compset -P '*='
        if [[ $choices == file ]]; then
            _files
        elif [[ -n $choices ]]; then
            compadd -- ${=choices}
        fi
    elif [[ $valued == *" $prev "* ]]; then
        choices=$(_swarmapply_choices "$cmd:$prev")
        if [[ $choices == file ]]; then
            _files
        elif [[ -n $choices ]]; then
            compadd -- ${=choices}
        fi
    elif [[ $cur == -* ]]; then
        compadd -- ${=$(_swarmapply_options "$cmd")}
    elif [[ -z $cmd ]]; then
        compadd -- ${=$(_swarmapply_commands)}
    elif ((npos == 0)); then
        choices=$(_swarmapply_words "$cmd")
        [[ -n $choices ]] && compadd -- ${=choices}
    fi
    return 0
}

if [[ $funcstack[1] == _swarmapply ]]; then
    _swarmapply "$@"  # autoloaded from $fpath: complete now
else
    compdef _swarmapply swarmapply
fi
"""


def bash_script() -> str:
    """The bash completion script (also what the zsh script is built alongside)."""
    return BASH.replace("@FUNCTIONS@", _shared_functions(command_specs(), "_swarmapply"))


def zsh_script() -> str:
    """The zsh completion script: a native completion function, no bashcompinit needed."""
    return ZSH.replace("@FUNCTIONS@", _shared_functions(command_specs(), "_swarmapply"))


def fish_script() -> str:
    """The fish completion script: one ``complete`` line per command, option and word."""
    specs = command_specs()
    top, commands = specs[0], [s for s in specs if s.name]
    names = " ".join(s.name for s in commands)
    lines = [
        "# fish completion for swarmapply, generated by `swarmapply completion fish`.",
        "# Install: swarmapply completion fish > ~/.config/fish/completions/swarmapply.fish",
        "complete -c swarmapply -f",
    ]
    no_command = f"not __fish_seen_subcommand_from {names}"
    for spec in commands:
        lines.append(
            f"complete -c swarmapply -n {shlex.quote(no_command)} -a {spec.name} "
            f"-d {shlex.quote(spec.help)}"
        )
    for spec in [top, *commands]:
        condition = no_command if not spec.name else f"__fish_seen_subcommand_from {spec.name}"
        lines.extend(_fish_options(spec, condition))
        if spec.words:
            words = " ".join(spec.words)
            first = f"{condition}; and not __fish_seen_subcommand_from {words}"
            lines.append(f"complete -c swarmapply -n {shlex.quote(first)} -a {shlex.quote(words)}")
    return "\n".join(lines) + "\n"


def _fish_options(spec: CommandSpec, condition: str) -> list[str]:
    """One ``complete`` line per option (its short and long forms together)."""
    lines: list[str] = []
    for group, help_text in spec.groups:
        option = group[0]
        flags = []
        for o in group:
            if o.startswith("--"):
                flags.append(f"-l {o[2:]}")
            elif len(o) == 2:
                flags.append(f"-s {o[1]}")
            else:
                flags.append(f"-o {o[1:]}")
        if option in spec.files:
            flags.append("-r -F")
        elif option in spec.choices:
            flags.append(f"-x -a {shlex.quote(' '.join(spec.choices[option]))}")
        elif option in spec.valued:
            flags.append("-x")
        if help_text:
            flags.append(f"-d {shlex.quote(help_text)}")
        lines.append(f"complete -c swarmapply -n {shlex.quote(condition)} {' '.join(flags)}")
    return lines


SCRIPTS = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``completion`` command to the command parsers."""
    parser = commands.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print a completion script for a shell to standard output: commands,\n"
        "options, option values and kind words, generated from this version's parser.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument("shell", choices=tuple(SCRIPTS), help="the shell to complete in")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Runs ``swarmapply completion``: prints the script for ``args.shell``."""
    ctx.stdout.write(SCRIPTS[args.shell]())
    ctx.stdout.flush()
    return 0
