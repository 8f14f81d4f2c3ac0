"""Helpers shared by the command-line tests: run `geom` in process, check one-line user errors."""

import os
import re
import signal

from geom_tools import cli, flow_cli

PROGRESS = re.compile(r"^geom \w+( \w+)?: +\d+%\|")
"""A line of a progress bar (tqdm, on stderr), as ``geom flow swf:  50%|█████ | 6/12 ...``."""


def run(capsys, *argv):
    """``geom *argv`` in process: ``(exit status, stdout, stderr)``."""
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc, out, err, *needles):
    """A user error: status 2, nothing on stdout, one line ``geom: error: ...`` holding every needle
    (besides the progress bar of a command that got as far as drawing one)."""
    assert rc == 2
    assert out == ""
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if not PROGRESS.match(line)]
    assert len(lines) == 1 and lines[0].startswith("geom: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def interrupt_at(monkeypatch, step):
    """Send a real SIGINT to this process when the flow's callback reaches ``step``."""
    original = flow_cli._Monitor.__call__

    def call(self, k, particles, value):
        if self.offset + k == step:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, k, particles, value)

    monkeypatch.setattr(flow_cli._Monitor, "__call__", call)
