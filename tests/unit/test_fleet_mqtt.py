"""The MQTT fleet's pure parts: broker addresses, topics, what a reader makes of retained
messages, the summary; and the alertmanager channel's alert documents."""

from __future__ import annotations

import json

import pytest

from zelador.cli.fleet import summarize, verdict
from zelador.config.reader import parse_config
from zelador.fleet.topics import Broker, broker_address, parse_message, terminals


def test_broker_addresses() -> None:
    assert broker_address("mqtt://broker") == Broker("broker", 1883, False)
    assert broker_address("mqtts://broker.example.net") == Broker("broker.example.net", 8883, True)
    assert broker_address("mqtt://127.0.0.1:11883") == Broker("127.0.0.1", 11883, False)
    for bad in ("tcp://x", "mqtt://", "mqtt://x:99999", "mqtt://x/zelador", "mqtt://u:p@x"):
        with pytest.raises(ValueError):
            broker_address(bad)


def test_messages_ours_and_not() -> None:
    doc = {"summary": "2/2 up", "down": ["monitor"], "updated_at": 5.0}
    name, leaf, parsed = parse_message("zelador/hosts/pos-1/state", "zelador",
                                       json.dumps(doc).encode())
    assert (name, leaf) == ("pos-1", "state") and {k: parsed[k] for k in doc} == doc
    assert parse_message("zelador/hosts/pos-1/online", "zelador", b"true") == \
        ("pos-1", "online", True)
    assert parse_message("zelador/hosts/pos-1/online", "zelador", b"false") == \
        ("pos-1", "online", False)
    assert parse_message("zelador/hosts/pos-1/state", "zelador", b"") == ("pos-1", "state", None)
    for topic, payload in (("other/hosts/a/state", b"{}"), ("zelador/hosts/a/x", b"{}"),
                           ("zelador/hosts/a/state", b"{not json"),
                           ("zelador/hosts/a/state", b"[1, 2]"), ("zelador/hosts//state", b"{}")):
        assert parse_message(topic, "zelador", payload) is None


def test_missing_is_offline_or_stale_and_presence_alone_is_unknown() -> None:
    now = 1_000_000.0
    states = {"a": {"updated_at": now - 10, "down": []},
              "b": {"updated_at": now - 10, "down": ["comunicador"]},
              "c": {"updated_at": now - 10, "down": []},
              "d": {"updated_at": now - 3600, "down": []}}
    online = {"a": True, "b": True, "c": False, "never-stated": True}
    rows = {t["name"]: verdict(t) for t in terminals(states, online, now=now, stale_after=900)}
    assert rows == {"a": "UP", "b": "DOWN", "c": "MISSING", "d": "MISSING"}


def test_summary_names_the_commonest_problems() -> None:
    fleet = [{"name": f"pos-{i}", "connected": True, "down": ["comunicador"] if i < 37 else [],
              "problems": ["backup failed"] if i % 100 == 0 else []} for i in range(1200)]
    fleet.append({"name": "gone", "connected": False, "down": ["monitor"]})
    text = summarize(fleet)
    assert text.splitlines()[0] == "1,201 terminals: 1,152 up, 48 down, 1 missing"
    assert "  comunicador down on 37 of 1,201" in text.splitlines()
    assert "  backup failed on 12 of 1,201" in text.splitlines()
    assert "monitor" not in text  # a missing terminal's last state is not a live problem


def test_fleet_config_mqtt_and_zookeeper_together() -> None:
    config = parse_config("""
jobs: {backup: {every: 1h}}
fleet: {zookeeper: "zk1:2181", mqtt: "mqtts://broker.example.net", topic: rede-x/zelador,
        keepalive: 20s, name: pos-1}
""")
    fleet = config.fleet
    assert fleet.enabled and fleet.zookeeper == "zk1:2181"
    assert (fleet.mqtt, fleet.topic, fleet.keepalive) == ("mqtts://broker.example.net",
                                                          "rede-x/zelador", 20.0)


def test_alertmanager_documents() -> None:
    from zelador.alerts.channels.alertmanager import alert, rfc3339
    from zelador.config.model import Alertmanager

    target = Alertmanager(url="http://am:9093", labels=(("chain", "x"),), resend=60.0)
    item = {"key": "program/comunicador/gave_up", "phase": "problem", "subject_kind": "program",
            "subject": "comunicador", "problem": "gave_up", "opened": 1000.0, "at": 1000.0,
            "message": "comunicador: gave up after 10 failed starts", "first": ""}
    firing = alert(item, target, "pos-1", now=2000.0)
    assert firing["labels"] == {"chain": "x", "alertname": "gave_up", "instance": "pos-1",
                                "program": "comunicador"}
    assert firing["startsAt"] == rfc3339(1000.0) == "1970-01-01T00:16:40.000Z"
    assert firing["endsAt"] == rfc3339(2000.0 + 240.0)
    assert firing["annotations"]["summary"] == "comunicador gave up"
    assert firing["annotations"]["description"] == "gave up after 10 failed starts"
    recovered = alert({**item, "phase": "recovery", "closed": 1500.0,
                       "message": "comunicador: running as pid 7"}, target, "pos-1", now=2000.0)
    assert recovered["labels"] == firing["labels"]  # the same alert, resolved
    assert recovered["endsAt"] == rfc3339(1500.0)
    job = alert({**item, "subject_kind": "job", "subject": "backup", "problem": "failed",
                 "key": "job/backup/failed"}, target, "pos-1", now=2000.0)
    assert job["labels"]["job"] == "backup" and "program" not in job["labels"]


def test_a_forged_state_is_reduced_to_safe_shapes() -> None:
    from zelador.fleet.topics import clean_document, clean_text

    assert clean_text("\x1b]0;pwned\x07caixa\nUP") == "?]0;pwned?caixa?UP"
    assert len(clean_text("x" * 1000)) == 200
    for forged in ({"updated_at": "yesterday"}, {"updated_at": 1e300}, {"updated_at": -5},
                   {"updated_at": float("nan")}, {"updated_at": True}):
        assert clean_document(forged)["updated_at"] == 0.0
    doc = clean_document({"down": 5, "summary": ["x"], "problems": [{"k": 1}, "a\nb"],
                          "programs": {"a": {"b": 1}}, "extra": {"deep": [1]}})
    assert doc["down"] == [] and doc["summary"] == '["x"]'
    assert doc["problems"] == ['{"k": 1}', "a?b"] and doc["programs"] == {"a": '{"b": 1}'}
    assert doc["extra"] == '{"deep": [1]}'
    assert parse_message("zelador/hosts/a/state", "zelador", b"[" * 100000) is None
    assert parse_message("zelador/hosts/a/state", "zelador", b'{"s": "' + b"x" * 70000 + b'"}') \
        is None
