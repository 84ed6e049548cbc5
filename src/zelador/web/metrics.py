"""/metrics in the Prometheus text format, by prometheus_client from a status snapshot.

Names follow the Prometheus naming rules (base units, `_total` for counters, `_seconds`,
`_timestamp_seconds`), and a state is a one-hot gauge with a `state` label, as
systemd_exporter's `systemd_unit_state` does, so `zelador_program_state{state="RUNNING"} == 0`
is an alert rule. Rendered with `generate_latest` from our own server (prometheus_client's
`start_http_server` would bind every interface).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from zelador import __version__
from zelador.jobs.states import JobPhase
from zelador.programs.states import Phase

PROGRAM_STATES = [p.value for p in Phase]
JOB_STATES = [p.value for p in JobPhase]


class _Snapshot:
    """A collector over the latest snapshot (set by the server before each scrape)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def collect(self) -> Iterator[Any]:
        data = self.data
        info = InfoMetricFamily("zelador_build", "zelador's version")
        info.add_metric([], {"version": __version__})
        yield info
        lag = GaugeMetricFamily("zelador_loop_lag_seconds",
                                "How late the supervision loop ran its last timer")
        lag.add_metric([], float(data.get("loop_lag", 0.0)))
        yield lag
        scan = GaugeMetricFamily("zelador_scan_duration_seconds",
                                 "How long the last full look at the process table took")
        scan.add_metric([], float(data.get("scan_seconds", 0.0)))
        yield scan
        yield from _config(data.get("config_identity") or {})
        programs = data.get("programs", [])
        up = GaugeMetricFamily("zelador_program_up", "1 if the program runs", labels=["program"])
        state = GaugeMetricFamily("zelador_program_state", "The program's state (one-hot)",
                                  labels=["program", "state"])
        restarts = CounterMetricFamily("zelador_program_restarts", "Times the program came "
                                       "back after an exit", labels=["program"])
        started = GaugeMetricFamily("zelador_program_start_time_seconds", "When the running "
                                    "instance started (Unix time)", labels=["program"])
        for prog in programs:
            name = prog["name"]
            up.add_metric([name], 1.0 if prog["state"] == Phase.RUNNING.value else 0.0)
            for value in PROGRAM_STATES:
                state.add_metric([name, value], 1.0 if prog["state"] == value else 0.0)
            restarts.add_metric([name], float(prog["restarts"]))
            if prog.get("started") is not None:
                started.add_metric([name], float(prog["started"]))
        yield from (up, state, restarts, started)
        jobs = data.get("jobs", [])
        job_state = GaugeMetricFamily("zelador_job_state", "The job's state (one-hot)",
                                      labels=["job", "state"])
        last_ok = GaugeMetricFamily("zelador_job_last_success_timestamp_seconds",
                                    "When a run of the job last ended OK", labels=["job"])
        duration = GaugeMetricFamily("zelador_job_last_duration_seconds",
                                     "How long the job's last run took", labels=["job"])
        for job in jobs:
            for value in JOB_STATES:
                job_state.add_metric([job["name"], value], 1.0 if job["state"] == value else 0.0)
            if job.get("last_ok") is not None:
                last_ok.add_metric([job["name"]], float(job["last_ok"]))
            last = job.get("last") or {}
            if last.get("duration") is not None:
                duration.add_metric([job["name"]], float(last["duration"]))
        yield from (job_state, last_ok, duration)
        checks = data.get("checks", [])
        ok = GaugeMetricFamily("zelador_check_ok", "1 if the check passes (pending: absent)",
                               labels=["check"])
        measured = GaugeMetricFamily("zelador_check_value", "The check's last measured value, in "
                                  "its unit (%, bytes, count, seconds)", labels=["check"])
        for check in checks:
            if check["state"] != "PENDING":
                ok.add_metric([check["name"]], 0.0 if check["state"] == "FAILING" else 1.0)
            if check.get("raw") is not None:
                measured.add_metric([check["name"]], float(check["raw"]))
        yield from (ok, measured)
        incidents = GaugeMetricFamily("zelador_open_incidents", "Problems open now",
                                      labels=["kind"])
        counts: dict[str, int] = {}
        for incident in data.get("incidents", []):
            counts[incident["subject_kind"]] = counts.get(incident["subject_kind"], 0) + 1
        for kind in ("program", "job", "check"):
            incidents.add_metric([kind], float(counts.get(kind, 0)))
        yield incidents
        degraded = GaugeMetricFamily("zelador_degraded", "1 while a part of zelador is degraded "
                                     "(see `zelador status`)", labels=["part"])
        for part in data.get("degraded", []):
            degraded.add_metric([part["part"]], 1.0)
        yield degraded
        errors = CounterMetricFamily("zelador_callback_errors", "Exceptions caught by the "
                                     "supervision loop's error boundary")
        errors.add_metric([], float(data.get("errors", 0)))
        yield errors


def _config(identity: dict[str, Any]) -> Iterator[Any]:
    """Which config runs (the same sha256 as `zelador status` and the fleet node) and whether
    the last reload took: a refused one leaves the old config, and sha256, in force."""
    info = InfoMetricFamily("zelador_config", "The running config: sha256 over its files")
    info.add_metric([], {"sha256": str(identity.get("sha256", "")),
                         "files": str(len(identity.get("files") or []))})
    yield info
    last = identity.get("last_reload") or {}
    success = GaugeMetricFamily("zelador_config_last_reload_success",
                                "0 if the last reload was refused (the old config runs), else 1")
    success.add_metric([], 0.0 if last.get("ok") is False else 1.0)
    yield success
    stamp = GaugeMetricFamily("zelador_config_last_reload_timestamp_seconds",
                              "When the config was last reloaded or refused (or first read)")
    stamp.add_metric([], float(last.get("at") or identity.get("loaded_at") or 0.0))
    yield stamp


class Metrics:
    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._snapshot = _Snapshot()
        self._registry.register(self._snapshot)  # type: ignore[arg-type]
        self._lock = threading.Lock()  # server threads scrape at once; one snapshot at a time

    def render(self, data: dict[str, Any]) -> bytes:
        with self._lock:
            self._snapshot.data = data
            return bytes(generate_latest(self._registry))
