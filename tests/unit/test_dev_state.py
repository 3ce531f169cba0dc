"""`emolens dev` reads the state an older emolens (no supervisor) left in .run/: status shows it,
up refuses in one line instead of a traceback, down stops its processes by PID."""

import json
import subprocess
import sys

from emolens_tools import dev


def test_a_stack_started_by_an_older_emolens_is_shown_refused_and_stopped(tmp_path, capsys):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        old = [{"name": "detector", "url": "detect", "pid": proc.pid, "workdir": str(tmp_path)}]
        (tmp_path / dev.STATE_FILE).write_text(json.dumps(old))
        assert dev.main(["status", "--workdir", str(tmp_path)]) == 1  # no supervisor
        out = capsys.readouterr().out
        assert "supervisor DOWN" in out and f"detector   running  pid {proc.pid}" in out
        assert dev.main(["up", "--workdir", str(tmp_path)]) == 2
        assert "without a supervisor: run `emolens dev down` first" in capsys.readouterr().err
        assert dev.main(["down", "--workdir", str(tmp_path)]) == 0
        assert proc.wait(timeout=15) is not None
        assert not (tmp_path / dev.STATE_FILE).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
