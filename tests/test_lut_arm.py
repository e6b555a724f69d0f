"""The torch path of the table builder on aarch64, under qemu-user-static (no board needed).

``scripts/setup_arm_emulation.sh`` prepares (and caches in ``$LATLAB_ARM_CACHE``, default
``~/.cache/latlab-arm64``) Debian's arm64 python3.11 and PyPI's aarch64 torch 2.9.1 wheel. Timings under
emulation are meaningless; the point is that the same code builds the same keys on ARM.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from latlab.lut.build import Arch, build_table
from latlab.lut.table import LatencyTable

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, platform, sys
from latlab.lut.build import Arch, build_table
from latlab.lut.table import LatencyTable
cfg = json.loads(sys.argv[2])
r = build_table(sys.argv[1], archs=[Arch("tiny", cfg)], imgsz=32, rounds=3, batch=3, calib=1, progress=False)
t = LatencyTable.load(sys.argv[1], backend="torch", threads=1, imgsz=32)
print(json.dumps({"machine": platform.machine(), "complete": r.complete, "keys": sorted(t.entries)}))
"""
CFG = {"nc": 4, "channel_divisor": 8, "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Shuffle_Block", [16, 2]],
                                                    [-1, 1, "MV2Block", [16, 1, 2]]], "head": []}


@pytest.mark.slow
def test_table_build_runs_on_aarch64_under_qemu(tmp_path):
    if sys.platform != "linux":
        pytest.skip("qemu-user emulation needs Linux")
    cache = Path(os.environ.get("LATLAB_ARM_CACHE", Path.home() / ".cache" / "latlab-arm64"))
    env = dict(os.environ, PIP=f"{sys.executable} -m pip")
    setup = subprocess.run(["bash", str(REPO / "scripts" / "setup_arm_emulation.sh"), str(cache)], env=env,
                           capture_output=True, text=True, timeout=1800)
    assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-3000:]
    assert "aarch64 check: aarch64 torch 2.9.1" in setup.stdout
    paths = dict(line.split("=", 1) for line in (cache / "env.sh").read_text().split() if "=" in line)
    qemu, rootfs, site = (paths[k].strip('"') for k in ("QEMU", "ROOTFS", "SITE"))
    out = tmp_path / "arm.lut.json"
    run = subprocess.run([qemu, "-L", rootfs, f"{rootfs}/usr/bin/python3.11", "-c", SCRIPT, str(out), json.dumps(CFG)],
                         env=dict(os.environ, PYTHONPATH=f"{site}:{REPO}", PYTHONDONTWRITEBYTECODE="1"),
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["machine"] == "aarch64" and got["complete"]
    arm = LatencyTable.load(out, backend="torch", threads=1)
    assert arm.fingerprint["machine"] == "aarch64" and arm.versions["torch"].startswith("2.9.1")
    # the host builds exactly the same keys: a table made on ARM serves predictions made here
    host = build_table(tmp_path / "host.lut.json", archs=[Arch("tiny", CFG)], imgsz=32, rounds=3, batch=3, calib=1,
                       progress=False).table
    assert sorted(host.entries) == got["keys"] == sorted(arm.entries)
    assert len(arm.entries) == 3
