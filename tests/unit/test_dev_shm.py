"""A killed Triton's python backend leaves /dev/shm regions that held face crops: stopping it
removes the regions that server (and its child processes) had mapped, and no others."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from emolens_tools import dev

HOLDER = r"""
import mmap, os, subprocess, sys, time
def hold(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, 4096)
    return mmap.mmap(fd, 4096)
mine = hold(sys.argv[1])
child = subprocess.Popen([sys.executable, "-c", "import mmap, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
                          "m = mmap.mmap(fd, 4096); print('ok', flush=True); parent = os.getppid()\n"
                          "while os.getppid() == parent: time.sleep(0.05)", sys.argv[2]],
                         stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print('ready', flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no /dev/shm on this platform")
def test_stopping_triton_removes_only_its_shared_memory():
    tag = uuid.uuid4().hex[:8]
    own, childs, other = (Path(f"/dev/shm/triton_python_backend_shm_region_{tag}_{n}") for n in ("a", "b", "c"))
    with open(childs, "wb") as f:
        f.truncate(4096)  # the child maps an existing region
    other.write_bytes(b"\xff\xd8 another server's region")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(own), str(childs)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        dev.stop(dev.Service("triton", "triton://127.0.0.1:1", proc.pid, "/tmp"), sig=signal.SIGKILL)
        assert not own.exists() and not childs.exists()  # what the killed server and its child mapped
        assert other.exists()  # a region of another server stays
    finally:
        proc.kill()
        for p in (own, childs, other):
            p.unlink(missing_ok=True)
