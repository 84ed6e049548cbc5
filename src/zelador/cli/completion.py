"""The bash completion script, rendered from the parser (see cli.commands).

Subcommands, their options and the choices of both are written into the script; the names of
programs, jobs, checks and channels are asked of `zelador names` at Tab time, from the config
the command line names (-c FILE, $ZELADOR_CONFIG, else the default). Self-contained: it needs no
bash-completion helpers, though the package installs it where bash-completion loads it.
"""

from __future__ import annotations

import argparse

from zelador.cli.commands import DIRS, FILES, NAMES_OF, Command, Option, common_options, walk
from zelador.cli.names import KINDS

_FUNCTIONS = r"""
_zelador_names() {  # the names of the kinds "$@" in the config the command line names
    local config="" i
    for ((i = 2; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            -c|--config) config=${COMP_WORDS[i+1]} ;;
            --config=*) config=${COMP_WORDS[i]#--config=} ;;
        esac
    done
    "${COMP_WORDS[0]}" names ${config:+--config "$config"} "$@" 2>/dev/null
}

_zelador_reply() {  # COMPREPLY from the lines of a command's output that start with $cur
    local word
    COMPREPLY=()
    while IFS= read -r word; do
        [[ $word == "$cur"* ]] && COMPREPLY+=("$word")
    done
}

_zelador_words() {
    _zelador_reply < <(printf '%s\n' $1)
}

_zelador_paths() {  # $1: -f files, -d folders
    compopt -o filenames 2>/dev/null
    _zelador_reply < <(compgen "$1" -- "$cur")
}

_zelador() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local command=${COMP_WORDS[1]} i word skip="" n=0
    COMPREPLY=()
    if ((COMP_CWORD == 1)); then
        if [[ $cur == -* ]]; then _zelador_words "--help --version"
        else _zelador_words "$_zelador_commands"; fi
        return
    fi
    if [[ $command == exec ]]; then  # after --: the command to run, then its arguments
        for ((i = 2; i < COMP_CWORD; i++)); do
            if [[ ${COMP_WORDS[i]} == -- ]]; then
                if ((i == COMP_CWORD - 1)); then _zelador_reply < <(compgen -c -- "$cur" | sort -u)
                else _zelador_paths -f; fi
                return
            fi
        done
    fi
    local values=" $(_zelador_values_of "$command") "
    if [[ $prev == -* && $values == *" $prev "* ]]; then
        _zelador_value "$command" "$prev"
        return
    fi
    if [[ $cur == -* ]]; then
        _zelador_words "$(_zelador_options_of "$command")"
        return
    fi
    for ((i = 2; i < COMP_CWORD; i++)); do  # which positional is this?
        word=${COMP_WORDS[i]}
        if [[ -n $skip ]]; then skip=""; continue; fi
        case $word in
            --*=*) ;;
            -*) [[ $values == *" $word "* ]] && skip=1 ;;
            *) n=$((n + 1)) ;;
        esac
    done
    _zelador_positional "$command" "$n"
}
complete -F _zelador zelador
"""


def _case(pattern: str, body: str) -> str:
    return f"        {pattern}) {body} ;;"


def _value_completion(option: Option) -> str:
    if option.choices:
        return f'_zelador_words "{" ".join(option.choices)}"'
    if option.dest in FILES:
        return "_zelador_paths -f"
    if option.dest in DIRS:
        return "_zelador_paths -d"
    return ":"


def _positional_completion(command: Command, option: Option) -> str:
    if command.name == "names":
        return f'_zelador_words "{" ".join(KINDS)}"'
    if option.choices:
        return f'_zelador_words "{" ".join(option.choices)}"'
    if option.dest in NAMES_OF:
        return f"_zelador_reply < <(_zelador_names {NAMES_OF[option.dest]})"
    return ":"


def bash_completion(top: argparse.ArgumentParser) -> str:
    common = common_options(top)
    commands = walk(top, tuple(o.dest for o in common))
    names = " ".join(c.name for c in commands)
    options_of, values_of, value, positional = [], [], [], []
    for command in commands:
        every = (*command.options, *common)
        flags = " ".join(flag for o in every for flag in o.flags) + " --help"
        options_of.append(_case(command.name, f'echo "{flags}"'))
        taking = " ".join(flag for o in every if o.takes_value for flag in o.flags)
        values_of.append(_case(command.name, f'echo "{taking}"'))
        for option in every:
            if option.takes_value:
                pattern = "|".join(f"{command.name}:{flag}" for flag in option.flags)
                value.append(_case(pattern, _value_completion(option)))
        for index, option in enumerate(command.positionals):
            last = index == len(command.positionals) - 1 and option.many
            pattern = f"{command.name}:{index}" + (f"|{command.name}:*" if last else "")
            positional.append(_case(pattern, _positional_completion(command, option)))
    functions = (("_zelador_options_of() {", "$1", options_of),
                 ("_zelador_values_of() {  # the options that take a value", "$1", values_of),
                 ("_zelador_value() {  # complete the value of option $2 of command $1",
                  "$1:$2", value),
                 ("_zelador_positional() {  # complete positional $2 (from 0) of command $1",
                  "$1:$2", positional))
    out = ["# bash completion for zelador(1); rendered from its argument parser by",
           "# zelador.cli.manpages: do not edit.", f'_zelador_commands="{names}"']
    for opening, subject, cases in functions:
        out += ["", opening, f"    case {subject} in", *cases, "    esac", "}"]
    return "\n".join(out) + "\n" + _FUNCTIONS
