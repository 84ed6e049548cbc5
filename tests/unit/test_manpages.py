"""zelador(1) and zelador.yaml(5): rendered from the parser and the key table, complete, clean.

Completeness is checked against the code, not against the renderer's own loops: the subcommands
and options come from the parser, the keys from every `keys.names(...)` the config reader calls,
so a subcommand or key the pages miss fails here.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
from pathlib import Path

import pytest

from zelador.checks.metrics import PROGRAM_METRICS, SYSTEM_METRICS
from zelador.cli.commands import subparsers
from zelador.cli.main import parser
from zelador.cli.manpages import CONFIG_EXAMPLES, main
from zelador.config import keys
from zelador.config.alerts import CHANNEL_KINDS
from zelador.config.reader import load_config
from zelador.errors import EXIT_STATUS

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("man")
    assert main([str(out)]) == 0
    return out


def plain(roff: str) -> str:
    """The roff source with font changes and escapes undone, to search in."""
    text = re.sub(r"\\f[BIRP]", "", roff)
    return text.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "")


def rendered(page: Path) -> tuple[str, str]:
    done = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True,
                          env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8",
                               "MAN_KEEP_FORMATTING": "", "MANPAGER": "cat", "PAGER": "cat"})
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_every_subcommand_and_option_is_in_zelador_1(pages: Path) -> None:
    text = plain((pages / "zelador.1").read_text())
    top = parser()
    commands = subparsers(top).choices
    assert {"run", "check", "validate", "status", "restart", "report", "exec", "jobs", "history",
            "alerts", "checks", "fleet", "units", "names", "demo"} <= set(commands)
    headings = re.findall(r"^\.SS zelador (\S+)", text, re.M)
    assert headings == list(commands)
    for name, sub in commands.items():
        for action in sub._actions:
            for flag in action.option_strings:
                assert re.search(rf"(^|[\s,]){re.escape(flag)}\b", text), f"{name} {flag}"
            if not action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help and action.help in text, f"{name} {action.dest}"
    for code, meaning in EXIT_STATUS:
        assert f"\n{code}\n{meaning}" in text
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "ENVIRONMENT",
                    "FILES", "EXAMPLES", "SEE ALSO"):
        assert f"\n.SH {section}\n" in text


def reader_paths() -> set[str]:
    """Every section of the key table the config reader asks for."""
    found: set[str] = set()
    for path in (ROOT / "src" / "zelador" / "config").glob("*.py"):
        for call in re.findall(r"keys\.names\(([^)]*)\)", path.read_text()):
            found |= set(re.findall(r'"([^"]*)"', call))
    return found


def test_every_mapping_the_reader_reads_takes_its_keys_from_the_table() -> None:
    """No literal key list: a key the reader knows is a key the table (and the page) has."""
    for path in (ROOT / "src" / "zelador" / "config").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "mapping" \
                    and len(node.args) == 3:
                allowed = node.args[2]
                free = isinstance(allowed, ast.Tuple) and not allowed.elts  # names of your own
                table = (isinstance(allowed, ast.Call) and
                         ast.unparse(allowed.func) == "keys.names")
                assert free or table, f"{path.name}:{node.lineno}: {ast.unparse(allowed)}"


def test_the_reader_takes_its_keys_from_the_table_and_the_table_is_all_used() -> None:
    assert reader_paths() == {section.path for section in keys.SECTIONS}
    figures = set(keys.names("programs.NAME.resources")) - {"every"}
    assert figures == set(PROGRAM_METRICS)
    assert set(SYSTEM_METRICS) <= set(keys.names("system.NAME"))
    assert set(keys.names("alerts.channels.NAME")) == {*CHANNEL_KINDS, "rate_limit"}
    for section in keys.SECTIONS:
        assert len(set(keys.names(section.path))) == len(section.keys), section.path
        for key in section.keys:
            assert key.default and key.meaning, f"{section.path}.{key.name}"


def test_every_config_key_is_in_zelador_yaml_5_under_its_section(pages: Path) -> None:
    text = plain((pages / "zelador.yaml.5").read_text())
    listed: dict[str, list[str]] = {}
    current = None
    for row in text.splitlines():
        heading = re.match(r"^\.SS (.*?)(?: \((\S+)\))?$", row)
        if heading:
            current = heading.group(2) if heading.group(2) is not None else (
                "" if heading.group(1) == "Top level" else None)
            if current is not None:
                listed[current] = []
        key = re.match(r"^(\w+) \(default: ", row)
        if key and current is not None:
            listed[current].append(key.group(1))
    for path in reader_paths():
        assert listed.get(path) == list(keys.names(path)), path


@pytest.mark.parametrize("page", ["zelador.1", "zelador.yaml.5"])
def test_pages_render_without_warnings_in_80_columns(pages: Path, page: str) -> None:
    out, err = rendered(pages / page)
    assert err == ""
    assert not [row for row in out.splitlines() if len(row) > 80]
    assert "zelador" in out.splitlines()[0].lower()


def test_the_examples_in_zelador_yaml_5_are_valid_configs(tmp_path: Path) -> None:
    """The shipped file, and the section examples read together as one file."""
    shipped = (ROOT / "config" / "zelador.yaml").read_text()
    together = "".join(snippet for _, snippet in CONFIG_EXAMPLES)
    for text in (shipped, together):
        path = tmp_path / "zelador.yaml"
        path.write_text(text)
        load_config(str(path), check_files=False)  # raises with FILE:LINE on a wrong example
        assert max(len(row) for row in text.splitlines()) <= 72  # so it fits 80 in man


def test_zelador_help_fits_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    top = parser()
    for sub in (top, *subparsers(top).choices.values()):
        text = sub.format_help()
        assert max(len(row) for row in text.splitlines()) <= 80, sub.prog


def test_zelador_names_names_checks_as_the_reader_does(tmp_path: Path) -> None:
    """`zelador names` reads plain YAML (Tab must work on a file with an error elsewhere); its
    check names must still be the ones events and alerts.rules use."""
    import yaml

    from zelador.cli.names import names_in
    from zelador.config.reader import check_names

    text = "".join(snippet for _, snippet in CONFIG_EXAMPLES)
    path = tmp_path / "zelador.yaml"
    path.write_text(text)
    config = load_config(str(path), check_files=False)
    data = yaml.safe_load(text)
    assert names_in(data, "checks") == check_names(list(config.programs), config.checks,
                                                   config.system)
    assert names_in(data, "programs") == [p.name for p in config.programs]
    assert names_in(data, "jobs") == [j.name for j in config.jobs]
    assert names_in(data, "channels") == [c.name for c in config.alerts.channels]
