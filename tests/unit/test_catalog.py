"""Every event kind zelador emits has a MESSAGE_ID, and every MESSAGE_ID a catalog entry."""

from __future__ import annotations

import pathlib
import re

from zelador.systemd.journal import MESSAGE_IDS

ROOT = pathlib.Path(__file__).parents[2]


def emitted_kinds() -> set[str]:
    kinds: set[str] = set()
    pattern = re.compile(r'(?:\bEvent|\bemit|\bevent|make_event)\((?:[a-z_.]+, )?"([a-z_]+)"')
    for path in (ROOT / "src" / "zelador").rglob("*.py"):
        kinds |= set(pattern.findall(path.read_text()))
    return kinds


def test_every_emitted_kind_has_a_message_id():
    kinds = emitted_kinds()
    assert {"exited", "started", "host_problem", "state_ignored", "stop_timeout"} <= kinds
    assert kinds - set(MESSAGE_IDS) == set()


def test_every_message_id_is_explained_in_the_catalog():
    catalog = (ROOT / "units" / "zelador.catalog").read_text()
    ids = set(re.findall(r"^-- ([0-9a-f]{32})$", catalog, re.M))
    assert set(MESSAGE_IDS.values()) <= ids
    assert len(set(MESSAGE_IDS.values())) == len(MESSAGE_IDS)


def test_the_version_is_the_packages() -> None:
    """`zelador --version` says what the .deb says (debian/changelog's first entry)."""
    from zelador import __version__

    changelog = (ROOT / "debian" / "changelog").read_text().splitlines()[0]
    assert changelog.split("(", 1)[1].split(")", 1)[0].split("-")[0] == __version__
