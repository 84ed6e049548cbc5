"""The config reader: the shipped files load, and every broken file gives its one-line error."""

from __future__ import annotations

import pathlib

import pytest

from zelador.config.durations import format_duration, parse_duration
from zelador.config.reader import load_config, parse_config
from zelador.errors import ConfigError

HERE = pathlib.Path(__file__).parent
CORPUS = sorted((HERE / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_broken_config_gives_expected_file_line_error(path):
    expected = path.read_text().splitlines()[0].split("# expect: ", 1)[1]
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}:"), message
    assert message[len(str(path)):].startswith(expected), message
    assert "\n" not in message


def test_corpus_is_not_empty():
    assert len(CORPUS) >= 15


def test_defaults_and_shapes():
    config = parse_config("""
programs:
  comunicador:
    match: {name: Comunicador}
    start: /bin/true --flag "two words"
    stop: {signal: INT, timeout: 500ms}
    restart: {delay: 1s, max_delay: 5m, burst: 5 in 2m, then: retry every 10m}
    environment: {LANG: pt_BR.UTF-8, DEBUG: 1}
  monitor:
    match: {name: Monitor}
    start: [/bin/true]
    part_of: comunicador
""")
    assert config.interval == 10.0
    com = config.program("comunicador")
    assert com.start == ("/bin/true", "--flag", "two words")
    assert com.stop.signal == 2 and com.stop.timeout == 0.5
    assert (com.restart.delay, com.restart.burst, com.restart.window, com.restart.retry_every) == (
        1.0, 5, 120.0, 600.0)
    assert dict(com.environment) == {"LANG": "pt_BR.UTF-8", "DEBUG": "1"}
    assert config.program("monitor").part_of == ("comunicador",)


def test_shell_string_runs_through_sh_only_when_asked():
    config = parse_config("""
programs:
  a: {match: {name: A}, start: "nohup /opt/x.sh > /dev/null &", shell: true}
""")
    assert config.program("a").start == ("/bin/sh", "-c", "nohup /opt/x.sh > /dev/null &")
    with pytest.raises(ConfigError, match="'nohup' must be an absolute path"):
        parse_config("programs:\n  a: {match: {name: A}, start: nohup /opt/x.sh}\n")


def test_shipped_configs_are_valid_apart_from_missing_vendor_scripts():
    for path in (HERE.parents[1] / "config").glob("*.yaml"):
        config = load_config(str(path), check_files=False)
        assert config.programs


@pytest.mark.parametrize("text,seconds", [("500ms", 0.5), ("10s", 10), ("5m", 300), ("1h 30m", 5400),
                                          ("2", 2), (3, 3), ("1.5s", 1.5), ("1min", 60)])
def test_durations_in_systemd_words(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "5 parsecs", "-1", True])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration():
    assert [format_duration(s) for s in (0.25, 5, 65, 3600 + 120, 90000)] == [
        "250ms", "5s", "1m 5s", "1h 2m", "1d 1h"]


def test_jobs_intake_and_history_sections():
    config = parse_config("""
jobs:
  fechamento: {id: 25, schedule: "30 2 * * *", timezone: America/Fortaleza, max_runtime: 20m,
               grace: 15m}
  import: {every: 1h, run: "/usr/local/bin/import-prices --all", user: root}
intake: {listen: "127.0.0.1:2021", allow: [127.0.0.0/8], max_connections: 50, idle_timeout: 5s}
history: {keep: 30d, max_rows: 50000}
""", check_files=False)
    fechamento, prices = config.jobs
    assert (fechamento.cron, fechamento.timezone, fechamento.max_runtime, fechamento.grace,
            fechamento.id) == ("30 2 * * *", "America/Fortaleza", 1200.0, 900.0, 25)
    assert prices.every == 3600.0 and prices.run == ("/usr/local/bin/import-prices", "--all")
    assert (prices.max_runtime, prices.grace) == (3600.0, 600.0)  # the defaults
    assert (config.intake.host, config.intake.port, config.intake.allow) == (
        "127.0.0.1", 2021, ("127.0.0.0/8",))
    assert (config.history.keep, config.history.max_rows) == (30 * 86400.0, 50000)
    assert config.programs == ()


def test_intake_can_be_turned_off():
    config = parse_config("jobs:\n  a: {every: 1h}\nintake: {listen: off}\n")
    assert not config.intake.enabled


ISSUE_ALERTS = """
jobs: {backup: {every: 1h}}
alerts:
  group_wait: 0s
  channels:
    hook:  {webhook: {url: "http://127.0.0.1:8099/zelador", timeout: 5s}}
    phone: {telegram: {token_file: /etc/zelador/telegram.token, chat_id: "-100123", on_recovery: delete}}
    mail:  {email: {host: smtp.example.net, port: 587, tls: starttls, from: pos@example.net,
                    to: [ops@example.net], password_file: /etc/zelador/smtp.password}}
"""


def test_the_alerts_example_of_the_issue_reads_as_written():
    alerts = parse_config(ISSUE_ALERTS, check_files=False).alerts
    assert [c.kind for c in alerts.channels] == ["webhook", "telegram", "email"]
    assert alerts.group_wait == 0.0 and alerts.rules == () and alerts.remind_every is None
    mail = alerts.channel("mail").target
    assert (mail.port, mail.tls, mail.to) == (587, "starttls", ("ops@example.net",))  # type: ignore[union-attr]
    assert alerts.channel("phone").target.on_recovery == "delete"  # type: ignore[union-attr]


def test_alert_defaults():
    alerts = parse_config("jobs: {b: {every: 1h}}\nalerts: {channels: {h: {webhook: "
                          "'http://127.0.0.1:1/'}}}\n").alerts
    assert (alerts.group_wait, alerts.flapping, alerts.flapping_window) == (10.0, 5, 900.0)
    assert (alerts.retry_first, alerts.retry_max, alerts.give_up_after) == (5.0, 600.0, 86400.0)
    assert (alerts.channels[0].rate, alerts.channels[0].per) == (20, 60.0)


def test_alert_rules_and_timings_read():
    alerts = parse_config("""
programs:
  comunicador: {match: {name: C}, start: /bin/true}
jobs: {backup: {every: 1h}}
alerts:
  remind_every: 4h
  flapping: 3 in 10m
  retry: {first: 10s, max: 1h}
  channels:
    phone: {webhook: "http://127.0.0.1:1/", rate_limit: 5 in 1m}
    cmd: {command: [/usr/local/bin/page, --urgent]}
  rules:
    - {programs: comunicador, events: [gave_up, flapping], channels: [phone]}
    - {jobs: [backup], recoveries: false}
""", check_files=False).alerts
    assert alerts.remind_every == 14400.0 and (alerts.flapping, alerts.flapping_window) == (3, 600.0)
    assert (alerts.retry_first, alerts.retry_max) == (10.0, 3600.0)
    assert alerts.channel("phone").rate == 5
    assert alerts.channel("cmd").target.argv == ("/usr/local/bin/page", "--urgent")  # type: ignore[union-attr]
    assert alerts.rules[0].programs == ("comunicador",) and not alerts.rules[1].recoveries


def test_the_checks_web_and_fleet_examples_of_the_issues_read_as_written():
    config = parse_config(ISSUE_BLOCKS, check_files=False)
    prog = config.programs[0]
    assert prog.health is not None and prog.health.probe.kind == "http"
    assert (prog.health.every, prog.health.probe.timeout, prog.health.fails) == (1.0, 1.0, 2)
    assert prog.resources[0].above == 500e6 and prog.resources[0].cycles == 3
    assert config.checks[0].json is not None and config.checks[0].json.items == ("data", "workers")
    assert [r.metric for r in config.system] == ["disk", "memory"]
    assert (config.web.enabled, config.web.host, config.web.port) == (True, "127.0.0.1", 9813)
    assert (config.fleet.zookeeper, config.fleet.path) == ("127.0.0.1:2181", "/zelador")


ISSUE_BLOCKS = """
programs:
  comunicador:
    match: {name: Comunicador}
    start: /bin/true
    health: {http: "http://127.0.0.1:8098/", every: 1s, timeout: 1s, fails: 2, action: restart}
    resources: {memory: {above: 500MB, for: 3 cycles, action: restart}}
checks:
  miners:
    every: 5s
    http: {url: "http://127.0.0.1:8097/api/workers", timeout: 2s}
    json: {items: data.workers, key: name, time: last_seen, stale_after: 10m, ignore_after: 8h}
system:
  disk_root: {disk: /, above: 90%, action: alert}
  memory: {memory: used, above: 95%, for: 5 cycles, action: alert}
web: {listen: "127.0.0.1:9813"}
fleet: {zookeeper: "127.0.0.1:2181", path: /zelador}
"""


def test_a_childrens_rule_takes_below_and_above():
    config = parse_config("programs:\n  a:\n    match: {name: a}\n    start: /bin/true\n"
                          "    resources: {children: {below: 2, above: 40, action: restart}}\n",
                          "t.yaml")
    (rule,) = config.programs[0].resources
    assert (rule.metric, rule.below, rule.above, rule.action) == ("children", 2, 40, "restart")
