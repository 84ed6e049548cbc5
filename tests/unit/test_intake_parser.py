"""The report line parser: the seed's format and its variants, every refusal, and a fuzz run."""

from __future__ import annotations

import contextlib
import os
import random

import pytest

from zelador.jobs.intake import Directory, Parsed, parse_line

SEED = b"#id=25;state=OK;name=JajaBackupData"
JOBS = Directory(frozenset({"JajaBackupData", "x"}), {25: "JajaBackupData", 7: "x"})


def test_the_seeds_line() -> None:
    assert parse_line(SEED) == Parsed("ok", name="JajaBackupData", ident=25)


@pytest.mark.parametrize("line", [b"state=ok;name=JajaBackupData;id=25",
                                  b"  #ID=25 ; State=Ok ; name=JajaBackupData\r",
                                  b"name=JajaBackupData;id=25;state=OK;"])
def test_order_case_hash_and_spaces_are_free(line: bytes) -> None:
    assert parse_line(line) == Parsed("ok", name="JajaBackupData", ident=25)


def test_our_fields() -> None:
    got = parse_line(b"name=x;state=FAIL;run=r-1;exit=3;duration=1.5;msg=a=b; c")
    assert got == Parsed("fail", name="x", run_id="r-1", exit_status=3, duration=1.5,
                         message="a=b; c")
    assert parse_line(b"id=7;state=start") == Parsed("start", ident=7)


@pytest.mark.parametrize(("line", "reason"), [
    (b"name=x", "no state="), (b"state=ok", "no name= or id="), (b"state=done;name=x", "is not OK"),
    (b"state=ok;name=x;colour=red", "unknown field 'colour'"), (b"state=ok;name", "not key=value"),
    (b"state=ok;id=abc", "id='abc' is not a number"), (b"state=ok;name=x;exit=1.5", "exit="),
    (b"state=ok;name=x;name=y", "given twice"), (b"state=ok;name=x;run=a b", "run= must be"),
    (b"state=ok;name=x;duration=-1", "cannot be negative")])
def test_refusals_say_why(line: bytes, reason: str) -> None:
    got = parse_line(line)
    assert isinstance(got, str) and reason in got


def test_directory_resolves_by_name_or_id_and_refuses_a_mismatch() -> None:
    jobs = Directory(frozenset({"backup", "fechamento"}), {25: "fechamento"})
    assert jobs.resolve(Parsed("ok", ident=25)) == "fechamento"
    assert jobs.resolve(Parsed("ok", name="backup")) == "backup"
    assert jobs.resolve(Parsed("ok", name="backup", ident=99)) == "backup"  # id unknown, name wins
    for parsed, reason in ((Parsed("ok", ident=1), "no job with id=1"),
                           (Parsed("ok", name="nope"), "unknown job 'nope'"),
                           (Parsed("ok", name="backup", ident=25), "id=25 is job 'fechamento'")):
        with pytest.raises(ValueError, match=reason):
            jobs.resolve(parsed)


def test_fuzz_100k_random_and_mutated_lines_never_raise() -> None:
    seed = int(os.environ.get("ZELADOR_FAULT_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    corpus = [SEED, b"name=x;state=FAIL;run=r-1;exit=3;duration=1.5;msg=a=b; c", b"id=7;state=start"]
    alphabet = b"#;=abcdefghijklmnopqrstuvwxyzOKFAIL0123456789 .-\x00\xff\xc3\r\t"
    for i in range(100_000):
        if i % 2:
            line = bytearray(rng.choice(corpus))
            for _ in range(rng.randint(1, 6)):
                pos = rng.randrange(len(line) + 1)
                op = rng.randrange(3)
                if op == 0:
                    line[pos:pos] = bytes([rng.choice(alphabet)])
                elif op == 1 and line:
                    del line[min(pos, len(line) - 1)]
                elif line:
                    line[min(pos, len(line) - 1)] = rng.randrange(256)
        else:
            line = bytearray(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        got = parse_line(bytes(line))
        if isinstance(got, Parsed):
            assert got.verb in ("start", "ok", "fail"), (seed, bytes(line))
            assert got.name or got.ident is not None, (seed, bytes(line))
            with contextlib.suppress(ValueError):
                assert JOBS.resolve(got) in JOBS.names
        else:
            assert isinstance(got, str) and got and "\n" not in got, (seed, bytes(line))


@pytest.mark.parametrize(("line", "reason"), [
    (b"state=fail;name=x;exit=99999999999999999999", "out of range"),
    (b"state=fail;name=x;exit=256", "exit='256' is out of range"),
    (b"state=fail;name=x;exit=-1", "out of range"),
    (b"state=ok;name=x;duration=1e300", "out of range"),
    (b"state=ok;name=x;duration=nan", "out of range"),
    (b"state=ok;name=x;duration=inf", "out of range"),
    (b"state=ok;id=2147483648", "out of range"),
    (b"state=ok;name=x;exit=" + b"9" * 4000, "out of range")])
def test_numbers_are_bounded(line: bytes, reason: str) -> None:
    got = parse_line(line)
    assert isinstance(got, str) and reason in got, got


def test_every_refusal_has_one_of_a_few_kinds() -> None:
    from zelador.jobs.intake import KINDS, reason_kind

    kinds = {kind for _, kind in KINDS}
    for line in (b"name=x", b"state=ok", b"state=done;name=x", b"state=ok;name=x;colour=red",
                 b"state=ok;name", b"state=ok;id=abc", b"state=ok;name=x;name=y",
                 b"state=ok;name=x;run=a b", b"state=ok;name=x;duration=-1",
                 b"state=ok;name=x;exit=300"):
        got = parse_line(line)
        assert isinstance(got, str) and reason_kind(got) in kinds, got
    assert reason_kind("too many open runs (100 of job x started)") == "too many open runs"
    assert reason_kind("something new") == "other"
