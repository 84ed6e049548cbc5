"""The package as Debian judges it: lintian on the .deb and the source package, and what the .deb
holds (the man pages and the completion rendered from this code)."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from zelador.cli.completion import bash_completion
from zelador.cli.main import parser

pytestmark = pytest.mark.system


def test_lintian_has_no_errors_or_warnings_on_the_deb_and_the_source(deb: Path) -> None:
    changes = next(deb.parent.glob(deb.name.replace("_all.deb", "_*.changes")))
    done = subprocess.run(["lintian", "--fail-on", "error,warning", "--info", "--display-info",
                           "--pedantic", str(changes)], capture_output=True, text=True,
                          timeout=600)
    tags = [row for row in done.stdout.splitlines() if row[:2] in ("E:", "W:", "I:", "P:", "X:")]
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [tag for tag in tags if tag[:2] in ("E:", "W:")], tags


def members(deb: Path) -> dict[str, bytes]:
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.lstrip("."): tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def test_the_deb_holds_the_pages_and_the_completion_of_this_code(deb: Path,
                                                                 tmp_path: Path) -> None:
    files = members(deb)
    completion = files["/usr/share/bash-completion/completions/zelador"].decode()
    assert completion == bash_completion(parser())
    for page in ("/usr/share/man/man1/zelador.1.gz", "/usr/share/man/man5/zelador.yaml.5.gz"):
        path = tmp_path / Path(page).name.removesuffix(".gz")
        path.write_bytes(gzip.decompress(files[page]))
        done = subprocess.run(["man", "--warnings", "-l", str(path)], capture_output=True,
                              text=True, env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"})
        assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "/usr/share/doc/zelador/copyright" in files
