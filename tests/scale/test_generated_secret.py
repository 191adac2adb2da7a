"""Web processes started together on one data folder without TANDEM_SECRET_KEY (``tandem
serve --workers N`` on a fresh install) must agree on the one key they generate: a cookie
signed by one must be accepted by the others."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support import ROOT

# Each process waits for the same instant, then asks for the key (and reads it once more).
RACE = """
import sys, time
from app.core.config import Settings
at = float(sys.argv[1])
time.sleep(max(0.0, at - time.time()))
s = Settings()
first = s.resolved_secret_key()
print(first, s.resolved_secret_key())
"""


def test_processes_starting_together_generate_one_secret_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TANDEM_SECRET_KEY"}
    data = tmp_path / "data"
    env["TANDEM_DATA_DIR"] = str(data)
    at = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(at)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(6)]
    seen = {tuple(p.communicate(timeout=60)[0].split()) for p in procs}
    assert all(len(pair) == 2 for pair in seen), seen  # an empty key reads as nothing
    keys = {key for pair in seen for key in pair}
    assert keys == {(data / "secret_key").read_text().strip()}, seen
    assert len(next(iter(keys))) >= 48
    # Private from the start, and no half-written files left behind.
    assert (data / "secret_key").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in data.iterdir()) == ["secret_key"]
