"""Bash completion, driven in a real bash: the function `complete -p zelador` names is replayed
with COMP_WORDS as bash would set them, and once with a real Tab in an interactive bash on a pty.

Names come from a real config through the real `zelador names` on PATH.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zelador.cli.commands import subparsers
from zelador.cli.completion import bash_completion
from zelador.cli.main import parser

from ..conftest import wait_for

CONFIG = """\
programs:
  comunicador:
    match: {name: Comunicador}
    start: /bin/true
    health: {tcp: "127.0.0.1:9"}
    resources: {memory: {above: 500MB}}
  monitor: {match: {name: Monitor}, start: /bin/true}
jobs:
  backup: {every: 1h}
  fechamento: {schedule: "30 2 * * *"}
checks:
  miners: {http: "http://127.0.0.1:9/"}
system:
  disk_root: {disk: /, above: 90%}
alerts:
  channels:
    phone: {webhook: "http://127.0.0.1:9/"}
    mail: {webhook: "http://127.0.0.1:9/"}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("completion")
    script = folder / "zelador.bash"
    script.write_text(bash_completion(parser()))
    config = folder / "zelador.yaml"
    config.write_text(CONFIG)
    bindir = Path(sys.executable).parent  # where the test run's `zelador` is
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(folder), "LANG": "C.UTF-8"}
    assert shutil.which("zelador", path=env["PATH"])
    return script, config, env


REPLAY = r"""
source "$1"
line=$2
read -ra COMP_WORDS <<<"$line"
[[ $line == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE=$line
COMP_POINT=${#line}
function=$(complete -p zelador | sed -E 's/.*-F ([^ ]+).*/\1/')
"$function" zelador "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


def complete(setup: tuple[Path, Path, dict[str, str]], line: str, **env: str) -> list[str]:
    script, config, base = setup
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", REPLAY, "bash", str(script),
                           line.replace("CONFIG", str(config))],
                          capture_output=True, text=True, env={**base, **env}, timeout=30)
    assert done.returncode == 0, done.stderr
    return [word for word in done.stdout.split("\n") if word]


def test_subcommands_and_top_options(setup) -> None:
    assert complete(setup, "zelador re") == ["restart", "report", "reload"]
    commands = list(subparsers(parser()).choices)
    assert complete(setup, "zelador ") == commands
    assert complete(setup, "zelador --") == ["--help", "--version"]


def test_program_job_check_and_channel_names_come_from_the_config(setup) -> None:
    assert complete(setup, "zelador restart -c CONFIG co") == ["comunicador"]
    assert complete(setup, "zelador stop --config CONFIG ") == ["comunicador", "monitor"]
    assert complete(setup, "zelador start --config=CONFIG m") == ["monitor"]
    assert complete(setup, "zelador report -c CONFIG ") == ["backup", "fechamento"]
    assert complete(setup, "zelador report -c CONFIG backup ") == ["start", "ok", "fail"]
    assert complete(setup, "zelador exec -c CONFIG f") == ["fechamento"]
    assert complete(setup, "zelador history -c CONFIG ") == [
        "comunicador", "monitor", "backup", "fechamento", "miners", "disk_root",
        "comunicador.health", "comunicador.memory"]
    assert complete(setup, "zelador alerts -c CONFIG ") == ["test"]
    assert complete(setup, "zelador alerts -c CONFIG test ") == ["phone", "mail"]
    assert complete(setup, "zelador names ") == ["programs", "jobs", "checks", "channels"]


def test_the_config_comes_from_zelador_config_when_the_line_names_none(setup) -> None:
    _, config, _ = setup
    assert complete(setup, "zelador restart co", ZELADOR_CONFIG=str(config)) == ["comunicador"]
    # no config at all (the default path does not exist here): nothing, and no error on screen
    assert complete(setup, "zelador restart co", ZELADOR_CONFIG="/nonexistent.yaml") == []


def test_every_option_of_every_subcommand_completes(setup) -> None:
    for name, sub in subparsers(parser()).choices.items():
        flags = {flag for action in sub._actions for flag in action.option_strings
                 if flag.startswith("--")}
        assert set(complete(setup, f"zelador {name} --")) == flags, name


def test_option_values(setup) -> None:
    _, config, _ = setup
    assert complete(setup, "zelador run --scopes ") == ["auto", "yes", "no"]
    assert complete(setup, "zelador run --log-target j") == ["journal"]
    assert complete(setup, f"zelador status -c {config.parent}/zelador.y") == [str(config)]
    folders = complete(setup, f"zelador units --output {config.parent.parent}/")
    assert str(config.parent) in folders and all(Path(f).is_dir() for f in folders)
    assert complete(setup, "zelador restart --timeout ") == []  # a number: nothing to offer
    # the option's value is not taken for the positional after it
    assert complete(setup, "zelador restart --timeout 5 -c CONFIG mo") == ["monitor"]


def test_after_exec_double_dash_commands_then_files(setup) -> None:
    assert "true" in complete(setup, "zelador exec backup -- tru")
    _, config, _ = setup
    assert complete(setup, f"zelador exec backup -- /bin/true {config.parent}/zelador.y") == [
        str(config)]


def test_a_real_tab_in_an_interactive_bash(setup) -> None:
    """The way a sysadmin meets it: `zelador restart co<Tab>` becomes `comunicador`."""
    script, config, env = setup
    pid, fd = pty.fork()
    if pid == 0:  # the child: an interactive bash on the pty
        os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"],
                  {**env, "TERM": "dumb", "PS1": "$ ", "ZELADOR_CONFIG": str(config)})
    seen = b""

    def read() -> bytes:
        nonlocal seen
        while select.select([fd], [], [], 0.05)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        return seen

    try:
        os.write(fd, f"source {script}\n".encode())
        wait_for(lambda: read().count(b"$ ") >= 2, timeout=20, what="the prompt back")
        os.write(fd, b"zelador restart co\t")
        wait_for(lambda: b"comunicador" in read(), timeout=20,
                 what="comunicador completed on Tab")
        line = seen.split(b"$ ")[-1]
        assert re.search(rb"zelador restart comunicador ", line), line
    finally:
        os.write(fd, b"\x03exit\n")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)


def test_zelador_names_for_scripts(setup) -> None:
    _, config, env = setup

    def names(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["zelador", "names", *args], capture_output=True, text=True,
                              env=env, timeout=30)

    assert names("-c", str(config), "checks").stdout.split() == [
        "miners", "disk_root", "comunicador.health", "comunicador.memory"]
    assert names("-c", str(config), "channels", "jobs").stdout.split() == [
        "phone", "mail", "backup", "fechamento"]
    wrong = names("-c", str(config), "program")
    assert wrong.returncode == 64 and "'program' is not one of programs" in wrong.stderr
    missing = names("-c", "/nonexistent.yaml")
    assert missing.returncode == 78
    assert missing.stderr.strip() == ("zelador: error: /nonexistent.yaml: No such file or "
                                      "directory")
