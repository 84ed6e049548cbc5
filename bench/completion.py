"""Tab completion: how long `zelador restart co<Tab>` takes, against the floor it cannot beat.

    .venv/bin/python -m bench.completion [--runs 30] [--programs 200]

Interleaved, one of each per round, medians and p90 of `--runs` rounds:
1. `python3 -c pass` (the interpreter alone) and `zelador --version` (our import floor);
2. `zelador names programs` on the shipped config and on one with `--programs` programs;
3. the whole completion as bash runs it on Tab (the script sourced beforehand, as bash-completion
   has it loaded): the function that asks `zelador names` and filters the answer.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zelador.cli.completion import bash_completion
from zelador.cli.main import parser

REPO = Path(__file__).resolve().parents[1]
TAB = r"""
source "$1"
shift
for config in "$@"; do
    start=$EPOCHREALTIME
    COMP_WORDS=(zelador restart -c "$config" co); COMP_CWORD=4
    _zelador
    end=$EPOCHREALTIME
    echo "${#COMPREPLY[@]} $start $end"
done
"""


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def big_config(folder: Path, programs: int) -> Path:
    lines = ["programs:"] + [f"  comunicador-{i}: {{match: {{name: prog{i}}}, start: /bin/true}}"
                             for i in range(programs)]
    path = folder / "big.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return f"{name:44} median {statistics.median(samples) * 1000:6.1f} ms   p90 {p90 * 1000:6.1f} ms"


def main() -> None:
    options = argparse.ArgumentParser()
    options.add_argument("--runs", type=int, default=30)
    options.add_argument("--programs", type=int, default=200)
    args = options.parse_args()
    zelador = shutil.which("zelador") or str(Path(sys.executable).parent / "zelador")
    shipped = str(REPO / "config" / "zelador.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        big = str(big_config(folder, args.programs))
        script = folder / "zelador.bash"
        script.write_text(bash_completion(parser()))
        commands = {
            "python3 -c pass": [sys.executable, "-c", "pass"],
            "zelador --version": [zelador, "--version"],
            "zelador names (shipped config)": [zelador, "names", "-c", shipped, "programs"],
            f"zelador names ({args.programs} programs)": [zelador, "names", "-c", big, "programs"],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        tab: dict[str, list[float]] = {"Tab, shipped config": [],
                                        f"Tab, {args.programs} programs": []}
        for _ in range(args.runs):
            for name, argv in commands.items():
                samples[name].append(timed(argv))
            out = subprocess.run(["bash", "--norc", "-c", TAB, "bash", str(script), shipped, big],
                                 capture_output=True, text=True, check=True,
                                 env={"PATH": f"{Path(zelador).parent}:/usr/bin:/bin"}).stdout
            for name, row in zip(tab, out.splitlines()):
                count, start, end = row.split()
                assert int(count) >= 1, row
                tab[name].append(float(end.replace(",", ".")) - float(start.replace(",", ".")))
    for name, values in (*samples.items(), *tab.items()):
        print(summary(name, values))


if __name__ == "__main__":
    main()
