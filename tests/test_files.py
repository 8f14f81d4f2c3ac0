"""geom._files: a file lands whole or not at all, and concurrent writers never share a temporary file."""

import os
import threading

import pytest

from geom._files import TEMP_PREFIX, atomic_path, atomic_write, save_figure, write_text


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path, failure):
    path = tmp_path / "summary.json"
    path.write_text("old")
    with pytest.raises(type(failure)):
        with atomic_write(path, "w") as fh:
            fh.write("half of the new")
            raise failure
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_the_new_file_replaces_the_old_one_with_the_usual_mode(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    os.chmod(path, 0o600)
    write_text(path, "new")
    assert path.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_writers_that_take_a_name_get_one_with_the_suffix(tmp_path):
    path = tmp_path / "x.npz"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(TEMP_PREFIX) and tmp.suffix == ".npz"
        tmp.write_bytes(b"data")
    assert path.read_bytes() == b"data"


def test_threads_writing_one_file_never_see_each_others_temporary_files(tmp_path):
    path, errors = tmp_path / "shared.txt", []
    start = threading.Barrier(8)

    def writer(k):
        try:
            start.wait()
            for i in range(50):
                write_text(path, f"{k}:{i}\n" * 100)
        except Exception as exc:  # any error is a failure of the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lines = path.read_text().splitlines()
    assert len(lines) == 100 and len(set(lines)) == 1  # one writer's whole file, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["shared.txt"]


def test_save_figure_writes_a_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "plot.png", dpi=50)
    plt.close(fig)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
