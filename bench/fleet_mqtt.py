"""The fleet at chain scale, on loopback: thousands of simulated terminals against Debian's
mosquitto and, side by side, Debian's ZooKeeper; and what the MQTT publisher costs a terminal.

    .venv/bin/python -m bench.fleet_mqtt [--terminals 5000] [--drop 1000]

Terminals are simulated by minimal protocol clients on asyncio (one process, one socket each:
MQTT 3.1.1 CONNECT with a Will + a retained state; ZooKeeper ConnectRequest + an ephemeral
node), so the load generator is not the bottleneck. Figures: time to read the whole fleet
(`zelador fleet` as a process, and the read alone), server RSS and CPU, a dead terminal seen
as MISSING (MQTT: the broker's Will after 1.5 keep-alives), 1,000 sessions dropping and
reconnecting at once; then two zelador daemons side by side (with and without fleet.mqtt):
RSS, idle CPU, and kill -> restart latency while the broker is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from tests.conftest import free_port
from tests.mqttserver import Mosquitto
from tests.zkserver import ZooKeeper

from bench.supervisors import cpu_ns, kills_of, pct, run_zelador, settle_one

DOC = {"summary": "2/2 up; 0 restarts", "programs": {"comunicador": "RUNNING",
                                                     "monitor": "RUNNING"},
       "down": [], "jobs": {}, "problems": [], "version": "bench"}


# --- a minimal MQTT 3.1.1 terminal -------------------------------------------------------------

def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _length(len(body)) + body


def connect_packet(client_id: str, keepalive: int, will_topic: str) -> bytes:
    flags = 0x02 | 0x04 | 0x08 | 0x20  # clean session, will, will QoS 1, will retain
    return _packet(0x10, _text("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) +
                   _text(client_id) + _text(will_topic) + _text(b"false"))


def publish_packet(topic: str, payload: bytes) -> bytes:
    return _packet(0x31, _text(topic) + payload)  # QoS 0, retained


class MqttTerminal:
    def __init__(self, port: int, name: str, keepalive: int) -> None:
        self.port, self.name, self.keepalive = port, name, keepalive
        self.writer: asyncio.StreamWriter | None = None
        self.pinger: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        online = f"zelador/hosts/{self.name}/online"
        writer.write(connect_packet(f"bench-{self.name}", self.keepalive, online))
        connack = await reader.readexactly(4)
        assert connack[0] == 0x20 and connack[3] == 0, connack
        doc = {**DOC, "updated_at": round(time.time(), 3)}
        writer.write(publish_packet(online, b"true") +
                     publish_packet(f"zelador/hosts/{self.name}/state", json.dumps(doc).encode()))
        await writer.drain()
        self.writer = writer
        self.pinger = asyncio.ensure_future(self._ping(reader))

    async def _ping(self, reader: asyncio.StreamReader) -> None:
        while self.writer is not None:
            await asyncio.sleep(self.keepalive / 2)
            if self.writer is None:
                return
            self.writer.write(b"\xc0\x00")
            await self.writer.drain()
            await reader.readexactly(2)  # PINGRESP

    def silence(self) -> None:
        """Powered off behind a NAT: no FIN, no RST, just nothing more: the broker notices
        when the keep-alive lapses (1.5 keep-alives) and publishes the Will."""
        if self.pinger is not None:
            self.pinger.cancel()
        self.pinger = None

    def drop(self) -> None:
        """Gone without a DISCONNECT (a process killed, a reset link): the Will follows at once."""
        if self.pinger is not None:
            self.pinger.cancel()
        if self.writer is not None:
            self.writer.transport.abort()
        self.writer = None


# --- a minimal ZooKeeper terminal (the jute wire format) -----------------------------------------

class ZkTerminal:
    def __init__(self, port: int, name: str, timeout_ms: int) -> None:
        self.port, self.name, self.timeout_ms = port, name, timeout_ms
        self.writer: asyncio.StreamWriter | None = None
        self.pinger: asyncio.Task[None] | None = None
        self.error = 0

    async def connect(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        request = struct.pack("!iqiq", 0, 0, self.timeout_ms, 0) + _zbytes(b"\0" * 16) + b"\0"
        writer.write(struct.pack("!i", len(request)) + request)
        await _zread(reader)
        path = f"/zelador/hosts/{self.name}"
        doc = json.dumps({**DOC, "updated_at": round(time.time(), 3)}).encode()
        acl = struct.pack("!i", 1) + struct.pack("!i", 31) + _zbytes(b"world") + _zbytes(b"anyone")
        create = struct.pack("!ii", 1, 1) + _zbytes(path.encode()) + _zbytes(doc) + acl + \
            struct.pack("!i", 1)  # xid 1, OpCode.create; flags 1: ephemeral
        writer.write(struct.pack("!i", len(create)) + create)
        await writer.drain()
        reply = await _zread(reader)
        self.error = struct.unpack("!iqi", reply[:16])[2]  # -110: NodeExists
        self.writer = writer
        self.pinger = asyncio.ensure_future(self._ping(reader))

    async def _ping(self, reader: asyncio.StreamReader) -> None:
        while self.writer is not None:
            await asyncio.sleep(self.timeout_ms / 3000)
            if self.writer is None:
                return
            self.writer.write(struct.pack("!iii", 8, -2, 11))
            await self.writer.drain()
            await _zread(reader)

    def drop(self) -> None:
        if self.pinger is not None:
            self.pinger.cancel()
        if self.writer is not None:
            self.writer.transport.abort()
        self.writer = None


def _zbytes(data: bytes) -> bytes:
    return struct.pack("!i", len(data)) + data


async def _zread(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack("!i", await reader.readexactly(4))
    return await reader.readexactly(size)


READ_ALONE = """
import sys, time
from zelador.fleet.mqtt import FleetReader, Login
reader = FleetReader(Login(sys.argv[1]), "zelador")
began = time.perf_counter()
reader.connect()
rows = reader.read()
print(time.perf_counter() - began, len(rows))
reader.close()
"""


READ_ZK = """
import sys, time
from zelador.fleet.zookeeper import read_fleet
began = time.perf_counter()
rows = read_fleet(sys.argv[1], "/zelador")
print(time.perf_counter() - began, len(rows))
"""


# --- the measures ------------------------------------------------------------------------------

async def connect_all(terminals: list[MqttTerminal] | list[ZkTerminal], batch: int = 200) -> float:
    began = time.perf_counter()
    for i in range(0, len(terminals), batch):
        await asyncio.gather(*(t.connect() for t in terminals[i:i + batch]))
    return time.perf_counter() - began


def server_figures(pid: int) -> tuple[float, float]:
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    rss = sum(p.memory_info().rss for p in procs) / 2**20
    cpu = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
    return rss, cpu


def read_times(argv: list[str], expect: str, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        times.append(time.perf_counter() - began)
        assert expect in done.stdout, done.stdout[-300:] + done.stderr
    return statistics.median(times)


async def mqtt_fleet(root: Path, count: int, drop: int, keepalive: int) -> None:
    from zelador.fleet.mqtt import FleetReader, Login

    broker = Mosquitto(root / "mqtt").start()
    assert broker.proc is not None
    try:
        # The watcher that times the Will and the reconnects subscribes first, so its socket
        # has a low fd (paho 1.x select()s: no fd above 1023, and this process holds thousands)
        reader = FleetReader(Login(broker.url), "zelador")
        reader.connect()
        terminals = [MqttTerminal(broker.port, f"pos-{i:05d}", keepalive) for i in range(count)]
        took = await connect_all(terminals)
        while len(reader.states) < count:
            await asyncio.sleep(0.05)
        rss, cpu0 = server_figures(broker.proc.pid)
        # The read alone, in a process of its own (paho 1.x select()s: no fd above 1023, and
        # this one holds thousands)
        reads = []
        for _ in range(5):
            done = await asyncio.get_running_loop().run_in_executor(None, lambda: subprocess.run(
                [sys.executable, "-c", READ_ALONE, broker.url], capture_output=True, text=True,
                timeout=60))
            seconds, rows = done.stdout.split()
            assert int(rows) == count, done.stdout + done.stderr
            reads.append(float(seconds))
        cli = await asyncio.get_running_loop().run_in_executor(
            None, read_times, [sys.executable, "-m", "zelador", "fleet", "--mqtt", broker.url,
                               "--summary"], f"{count:,} terminals")
        print(f"MQTT (mosquitto): {count} terminals connected in {took:.1f} s; broker RSS "
              f"{rss:.1f} MB; zelador fleet as a process {cli:.2f} s, the read alone "
              f"{statistics.median(reads) * 1000:.0f} ms (medians of 5)")
        # a dead terminal: seen as MISSING after the broker's Will
        began = time.perf_counter()
        terminals[0].drop()
        while reader.online.get(terminals[0].name, True):
            await asyncio.sleep(0.05)
        reset = time.perf_counter() - began
        # the last ping may have just gone: the keep-alive counts from the last packet
        began = time.perf_counter()
        terminals[-1].silence()
        while reader.online.get(terminals[-1].name, True):
            await asyncio.sleep(0.05)
        silent = time.perf_counter() - began
        print(f"  a dead terminal MISSING: connection reset {reset:.2f} s; silent (power cut "
              f"behind NAT) {silent:.1f} s = {silent / keepalive:.2f} x the keep-alive "
              f"({keepalive} s; MQTT allows 1.5 x)")
        # 1,000 sessions drop and reconnect at once
        cpu1 = server_figures(broker.proc.pid)[1]
        group = terminals[1:1 + drop]
        for t in group:
            t.drop()
        began = time.perf_counter()
        await connect_all(group, batch=drop)
        while sum(1 for t in group if reader.online.get(t.name)) < drop:
            await asyncio.sleep(0.02)
        back = time.perf_counter() - began
        rss2, cpu2 = server_figures(broker.proc.pid)
        reader.close()
        print(f"  {drop} sessions dropped and reconnected at once: all online again in "
              f"{back:.2f} s, broker CPU {cpu2 - cpu1:.2f} s for it; broker RSS {rss2:.1f} MB; "
              f"broker CPU since all connected {cpu2 - cpu0:.2f} s")
        for t in terminals:
            t.drop()
    finally:
        broker.stop()


async def zk_fleet(root: Path, count: int, drop: int) -> None:
    zk = ZooKeeper(root / "zk")
    zk.config.write_text(zk.config.read_text() + "maxClientCnxns=0\n")
    zk.start()
    assert zk.proc is not None
    try:
        setup = ZkTerminal(zk.port, "setup", 30000)
        await setup.connect()  # makes no path: create the parents with kazoo
        setup.drop()
        from kazoo.client import KazooClient

        client = KazooClient(hosts=zk.hosts)
        client.start()
        client.ensure_path("/zelador/hosts")
        client.stop()
        terminals = [ZkTerminal(zk.port, f"pos-{i:05d}", 30000) for i in range(count)]
        took = await connect_all(terminals)
        rss, _ = server_figures(zk.proc.pid)
        reads = []
        for _ in range(5):  # in a process of its own, as for MQTT
            done = await asyncio.get_running_loop().run_in_executor(None, lambda: subprocess.run(
                [sys.executable, "-c", READ_ZK, zk.hosts], capture_output=True, text=True,
                timeout=60))
            seconds, rows = done.stdout.split()
            assert int(rows) == count, done.stdout + done.stderr
            reads.append(float(seconds))
        cli = await asyncio.get_running_loop().run_in_executor(
            None, read_times, [sys.executable, "-m", "zelador", "fleet", "--zookeeper", zk.hosts,
                               "--summary"], f"{count:,} terminals")
        print(f"ZooKeeper (maxClientCnxns=0): {count} terminals connected in {took:.1f} s; server "
              f"RSS {rss:.1f} MB; zelador fleet as a process {cli:.2f} s, the read alone "
              f"{statistics.median(reads) * 1000:.0f} ms (medians of 5)")
        cpu1 = server_figures(zk.proc.pid)[1]
        group = terminals[:drop]
        for t in group:
            t.drop()
        began = time.perf_counter()
        try:
            await asyncio.wait_for(connect_all(group, batch=drop), 120)
            exists = sum(1 for t in group if t.error == -110)
            back = (f"new sessions in {time.perf_counter() - began:.2f} s; {exists} of {drop} "
                    "found their node still held by the old session (NodeExists: it goes when "
                    "that session expires, after its timeout, 30 s here)")
        except Exception as exc:  # the old sessions' nodes linger until they expire
            back = f"reconnect failed: {type(exc).__name__} {exc}"
        rss2, cpu2 = server_figures(zk.proc.pid)
        print(f"  {drop} sessions dropped and reconnected at once: {back}, server CPU "
              f"{cpu2 - cpu1:.2f} s for it; server RSS {rss2:.1f} MB")
        for t in terminals:
            t.drop()
    finally:
        zk.stop()


def terminal_cost(root: Path, kills: int) -> None:
    """Three daemons side by side: no fleet, publishing to a live broker, and publishing to a
    broker that is unreachable (connections refused, retried with backoff)."""
    import shutil

    dead_port = free_port()
    live = Mosquitto(root / "mqtt-live").start()
    procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for label, comm, fleet in (
                ("no fleet", "bfplain", ""),
                ("mqtt", "bfmqtt", f'fleet: {{mqtt: "{live.url}", name: t1}}\n'),
                ("mqtt down", "bfdown", f'fleet: {{mqtt: "mqtt://127.0.0.1:{dead_port}", '
                                        'name: t2}\n')):
            binary = root / comm
            shutil.copy("/bin/sleep", binary)
            config = (f"programs:\n  {comm}:\n    match: {{name: {comm}}}\n"
                      f"    start: \"nohup {binary} 100000 >/dev/null 2>&1 &\"\n"
                      "    shell: true\n" + fleet)
            procs[label] = (run_zelador(root / label.replace(" ", "-"), config), comm)
        for _, comm in procs.values():
            settle_one(comm)
        time.sleep(5)
        rss = {label: psutil.Process(proc.pid).memory_info().rss / 2**20
               for label, (proc, _) in procs.items()}
        before = {label: cpu_ns(proc.pid) for label, (proc, _) in procs.items()}
        time.sleep(60)
        for label, (proc, _) in procs.items():
            cpu = (cpu_ns(proc.pid) - before[label]) / 1e9 / 60 * 100
            print(f"terminal, {label:9s}: RSS {rss[label]:.1f} MB, idle CPU {cpu:.4f} % of a "
                  "core (60 s)")
        names = [procs["no fleet"][1], procs["mqtt down"][1]]
        lat = kills_of(names, kills, 10.5)  # past restart.stable: each kill is a plain restart
        plain = [x * 1000 for x in lat[names[0]]]
        down = [x * 1000 for x in lat[names[1]]]
        print(f"kill -> restart, n={kills} each, interleaved: no fleet p50 {pct(plain, 0.5):.1f} "
              f"p90 {pct(plain, 0.9):.1f} ms; broker unreachable p50 {pct(down, 0.5):.1f} p90 "
              f"{pct(down, 0.9):.1f} ms; ratio p50 {pct(down, 0.5) / pct(plain, 0.5):.2f}, p90 "
              f"{pct(down, 0.9) / pct(plain, 0.9):.2f}")
    finally:
        for proc, comm in procs.values():
            proc.terminate()
            proc.wait(10)
            subprocess.run(["pkill", "-x", comm], check=False)
        live.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terminals", type=int, default=5000)
    parser.add_argument("--drop", type=int, default=1000)
    parser.add_argument("--keepalive", type=int, default=10)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--skip-zookeeper", action="store_true")
    parser.add_argument("--only-terminal", action="store_true",
                        help="only what the publisher costs a terminal")
    args = parser.parse_args()
    want = args.terminals * 2 + 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(want, hard)), hard))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if not args.only_terminal:
            asyncio.run(mqtt_fleet(root, args.terminals, args.drop, args.keepalive))
        if not (args.skip_zookeeper or args.only_terminal):
            asyncio.run(zk_fleet(root, args.terminals, args.drop))
        terminal_cost(root, args.kills)


if __name__ == "__main__":
    main()
