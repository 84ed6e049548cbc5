"""Drop-ins: zelador.d/*.yaml read in name order after zelador.yaml, merged by name; a key given
in two files is an error naming both FILE:LINE; every file gets the root-only checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zelador.config.reader import load_config
from zelador.errors import ConfigError

MAIN = """\
programs:
  comunicador:
    match: {name: Comunicador}
    start: /bin/true
alerts:
  channels:
    hook: {webhook: {url: "http://127.0.0.1:9/a"}}
  rules:
    - {programs: [comunicador], channels: [hook]}
"""


def layout(tmp_path: Path, **dropins: str) -> Path:
    main = tmp_path / "zelador.yaml"
    main.write_text(MAIN)
    folder = tmp_path / "zelador.d"
    folder.mkdir()
    for name, text in dropins.items():
        (folder / name.replace("_", "-")).write_text(text)
    return main


def test_dropins_add_programs_jobs_channels_and_keys_in_name_order(tmp_path: Path) -> None:
    main = layout(tmp_path, **{
        "20_site.yaml": "programs:\n  monitor: {match: {name: Monitor}, start: /bin/true}\n",
        "10_base.yaml": ("programs:\n  comunicador:\n    start_timeout: 45s\n"
                         "jobs:\n  fechamento: {schedule: '30 2 * * *', run: /bin/true}\n"
                         "alerts:\n  channels:\n    hook2: {webhook: {url: 'http://127.0.0.1:9/b'}}\n"
                         "  rules:\n    - {jobs: [fechamento], channels: [hook2]}\n"),
        "30_ignored.yml": "programs: {x: {match: {name: X}, start: /bin/true}}\n",
    })
    config = load_config(str(main))
    assert config.names == ("comunicador", "monitor")
    assert config.program("comunicador").start_timeout == 45.0
    assert [j.name for j in config.jobs] == ["fechamento"]
    assert [c.name for c in config.alerts.channels] == ["hook", "hook2"]
    assert len(config.alerts.rules) == 2
    folder = tmp_path / "zelador.d"
    assert config.files == (str(main), str(folder / "10-base.yaml"), str(folder / "20-site.yaml"))
    assert len(config.sha256) == 64


def test_a_key_set_twice_names_both_files_and_lines(tmp_path: Path) -> None:
    main = layout(tmp_path, **{"50_x.yaml": "# the site's own\nprograms:\n  comunicador:\n"
                                            "    start: /bin/false\n"})
    with pytest.raises(ConfigError) as caught:
        load_config(str(main))
    dropin = tmp_path / "zelador.d" / "50-x.yaml"
    assert str(caught.value) == (
        f"{dropin}:4: programs.comunicador.start: set twice: here and at {main}:4 (a drop-in "
        "adds keys, it cannot change one; move the value to one file)")


def test_an_error_inside_a_dropin_names_the_dropin(tmp_path: Path) -> None:
    main = layout(tmp_path, **{"a.yaml": "programs:\n  monitor:\n    match: {name: Monitor}\n"
                                         "    start: /bin/true\n    part_off: comunicador\n"})
    with pytest.raises(ConfigError, match=r"/zelador\.d/a\.yaml:5: programs\.monitor\.part_off: "
                                          r"unknown key \(did you mean 'part_of'\?\)"):
        load_config(str(main))
    (tmp_path / "zelador.d" / "a.yaml").write_text("programs: [\n")
    with pytest.raises(ConfigError, match=r"/zelador\.d/a\.yaml:2: YAML syntax"):
        load_config(str(main))


def test_the_identity_changes_with_any_file_and_an_empty_dropin_counts(tmp_path: Path) -> None:
    main = layout(tmp_path)
    first = load_config(str(main)).sha256
    assert load_config(str(main)).sha256 == first
    (tmp_path / "zelador.d" / "00-empty.yaml").write_text("")
    second = load_config(str(main))
    assert second.sha256 != first and len(second.files) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="the root-only checks apply when zelador is root")
def test_a_dropin_a_non_root_user_can_write_is_refused(tmp_path: Path) -> None:
    main = layout(tmp_path, **{"a.yaml": "interval: 5s\n"})
    dropin = tmp_path / "zelador.d" / "a.yaml"
    os.chmod(dropin, 0o666)
    with pytest.raises(ConfigError, match=r"refusing config file .*a\.yaml.* is writable by others"):
        load_config(str(main))
    os.chmod(dropin, 0o644)
    os.chown(tmp_path / "zelador.d", 1000, 1000)
    with pytest.raises(ConfigError, match=r"the folder .*zelador\.d' on its path is owned by "
                                          "uid 1000"):
        load_config(str(main))


def test_names_lists_what_the_dropins_add(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    from zelador.cli.main import main

    main_file = layout(tmp_path, **{"a.yaml": "programs:\n  monitor: {start: /bin/true}\n",
                                    "b.yaml": "programs: [broken\n"})
    assert main(["names", "-c", str(main_file), "programs", "channels"]) == 0
    assert capsys.readouterr().out.split() == ["comunicador", "monitor", "hook"]
