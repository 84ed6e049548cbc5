"""`zelador reload`: the running daemon reads its config again, and this command says how that
went. It is the unit's ExecReload=, so `systemctl reload zelador` fails, with the config's
FILE:LINE error, when the new config is refused (the running one stays), and needs no
/bin/kill (procps)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from zelador.errors import EX_OK
from zelador.runtime.control import ask

TIMEOUT = 60.0  # reading the config and reconfiguring is quick; a loaded terminal may be slow


def cmd_reload(args: argparse.Namespace, socket_path: Callable[[argparse.Namespace], str]) -> int:
    reply = ask(socket_path(args), {"cmd": "reload"}, timeout=TIMEOUT)  # refused: ConfigError, 78
    identity = reply.get("config_identity") or {}
    files = identity.get("files") or []
    print(f"reloaded: config {str(identity.get('sha256', ''))[:12]} from {len(files)} "
          f"file{'s' if len(files) != 1 else ''}", file=sys.stderr)
    return EX_OK


def add_command(sub: Any, common: argparse.ArgumentParser,
                socket_path: Callable[[argparse.Namespace], str]) -> None:
    reload = sub.add_parser("reload", parents=[common],
                            help="make the running zelador read its config again and wait for "
                                 "its verdict; exit 78 with the error if it refused the config")
    reload.set_defaults(func=lambda args: cmd_reload(args, socket_path))
