"""The hub as a systemd service: readiness notifications and the unit file.

``notify(...)`` speaks systemd's notify protocol directly (no dependency):
one datagram of ``KEY=VALUE`` lines to the ``AF_UNIX`` socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). It is a
no-op without that variable and never raises: a service manager that went
away must not stop the hub. The hub sends ``READY=1`` once it runs,
``RELOADING=1`` (with ``MONOTONIC_USEC``) and ``READY=1`` around a reload, and
``STOPPING=1`` when it begins to stop; each with a ``STATUS=`` line that
``systemctl status`` shows.

``unit(...)`` renders the unit ``edgestream hub install-service`` writes:
``Type=notify``, ``ExecReload`` sends SIGHUP, ``Restart=on-failure``.

    >>> print(unit("/usr/bin/python3", "/etc/edgestream/hub.yaml", user=False).splitlines()[7])
    ExecStart=/usr/bin/python3 -m edgestream_tools.cli hub run -c /etc/edgestream/hub.yaml --log-format json
"""

from __future__ import annotations

import os
import shlex
import socket
import time
from pathlib import Path

UNIT_NAME = "edgestream-hub.service"


def notify(*states: str, env: dict[str, str] | None = None) -> bool:
    """Send ``states`` (``"READY=1"``, ``"STATUS=..."``) to the service manager; True if a datagram went out."""
    target = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not target or not states:
        return False
    if target.startswith("@"):
        addr: str | bytes = b"\0" + target[1:].encode()
    elif target.startswith("/"):
        addr = target
    else:
        return False  # vsock and other address kinds: not for a hub on a gateway
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall("\n".join(states).encode() + b"\n")
        return True
    except OSError:
        return False


def reloading(status: str = "reloading the config") -> bool:
    """``RELOADING=1`` with the monotonic time systemd asks for (``Type=notify-reload`` needs it)."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={status}")


def unit(python: str, config: str, *, user: bool, stop_timeout_s: float = 10.0) -> str:
    """The unit file text for a hub running ``config`` with ``python`` (the interpreter EdgeStream is installed
    in). A system unit starts at boot (multi-user.target), a user unit when the user's manager starts
    (default.target; ``loginctl enable-linger`` makes that at boot)."""
    q = shlex.quote
    cmd = f"{q(python)} -m edgestream_tools.cli hub run -c {q(config)} --log-format json"
    after = "network-online.target mosquitto.service"
    wanted = "default.target" if user else "multi-user.target"
    lines = [
        "[Unit]",
        "Description=EdgeStream hub (stream processing for the edge)",
        *([] if user else ["Wants=network-online.target"]),  # a user manager has no network-online.target
        f"After={after}",
        "",
        "[Service]",
        "Type=notify",
        f"ExecStart={cmd}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=5",
        f"WorkingDirectory={Path(config).parent}",
        f"TimeoutStopSec={int(stop_timeout_s) + 20}",
        "Environment=PYTHONUNBUFFERED=1",
        "",
        "[Install]",
        f"WantedBy={wanted}",
        "",
    ]
    return "\n".join(lines)


def unit_path(user: bool, home: str | None = None) -> Path:
    """Where the unit goes: ``/etc/systemd/system`` or the user's ``~/.config/systemd/user``."""
    if user:
        base = Path(home or os.path.expanduser("~"))
        return base / ".config" / "systemd" / "user" / UNIT_NAME
    return Path("/etc/systemd/system") / UNIT_NAME
