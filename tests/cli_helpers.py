"""Helpers shared by the command-line tests: run `geom` in process, check one-line user errors."""

from geom_tools import cli


def run(capsys, *argv):
    """``geom *argv`` in process: ``(exit status, stdout, stderr)``."""
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc, out, err, *needles):
    """A user error: status 2, nothing on stdout, one line ``geom: error: ...`` holding every needle."""
    assert rc == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geom: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
