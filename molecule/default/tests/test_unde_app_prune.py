"""roles/unde_app removes the units a host no longer lists (roles/unde_app/README.md, "run").

On model-generator (base_only: no other role deploys there) molecule/default/unde_app_prune.yml
deploys a synthetic app with two services and a timer, then with one service only. The second run
stops, disables and removes the dropped service and the timer with its service, and reports them
as changed; a unit file of another app (``# unde_app: other_app``) stays; the kept service keeps
running; a third run changes nothing.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testinfra.host import Host  # type: ignore[import-untyped]
from unde_tools import lab_client

_default = sys.modules["unde_molecule_lab"]
lab_host = _default.lab_host
pytestmark = pytest.mark.lab

HOST = "model-generator"
UNITS = "/etc/systemd/system"
DECOY = f"{UNITS}/unde-other-decoy.service"
DECOY_TEXT = "# unde_app: other_app\n[Service]\nType=exec\nExecStart=/bin/sleep infinity\n"


def unit(name: str) -> dict[str, Any]:
    return {"name": name, "exec": "/bin/sleep infinity", "venv": False, "memory_max": "32M"}


FIRST = {
    "unde_app_units": [unit("prunedemo-keep"), unit("prunedemo-drop")],
    "unde_app_timers": [{**unit("prunedemo-tick"), "exec": "/bin/true", "on_calendar": "daily"}],
}
SECOND = {"unde_app_units": [unit("prunedemo-keep")], "unde_app_timers": []}
DROPPED = ("unde-prunedemo-drop.service", "unde-prunedemo-tick.service", "unde-prunedemo-tick.timer")


def deploy(tmp_path: Path, extra: dict[str, Any]) -> str:
    path = tmp_path / "extra.json"
    path.write_text(json.dumps(extra))
    res = lab_client.ansible_playbook("molecule/default/unde_app_prune.yml", "-e", f"@{path}", timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    return res.stdout


def changed(out: str) -> int:
    match = re.search(rf"^{re.escape(HOST)}\s*:.*?changed=(\d+)", out, re.M)
    assert match, out[-2000:]
    return int(match.group(1))


@pytest.fixture
def node() -> Iterator[Host]:
    host: Host = lab_host(HOST)
    yield host
    host.run(
        "systemctl disable --now unde-prunedemo-keep.service unde-prunedemo-drop.service "
        "unde-prunedemo-tick.timer; rm -f %s %s/unde-prunedemo-*; systemctl daemon-reload; "
        "userdel unde-prunedemo; rm -rf /opt/unde/prunedemo; rmdir --ignore-fail-on-non-empty /opt/unde",
        DECOY,
        UNITS,
    )


def test_units_the_host_no_longer_lists_are_removed(node: Host, tmp_path: Path) -> None:
    deploy(tmp_path, FIRST)
    assert node.service("unde-prunedemo-drop").is_running
    assert node.run("systemctl is-enabled unde-prunedemo-tick.timer").stdout.strip() == "enabled"
    assert node.run("printf '%%s' %s > %s", DECOY_TEXT, DECOY).rc == 0

    out = deploy(tmp_path, SECOND)
    for name in DROPPED:
        assert re.search(rf"changed: \[{HOST}\] => \(item={re.escape(name)}\)", out), (name, out[-4000:])
        assert not node.file(f"{UNITS}/{name}").exists, name
        assert node.run("systemctl is-active %s", name).stdout.strip() != "active", name
    loaded = node.run("systemctl list-units --all --plain --no-legend").stdout
    assert "unde-prunedemo-drop.service" not in loaded
    assert node.file(DECOY).exists, "a unit of another app was removed"
    assert node.service("unde-prunedemo-keep").is_running

    assert changed(deploy(tmp_path, SECOND)) == 0
