"""geom.collection on Dask: the same results bit for bit, files read on the workers, a killed worker."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

import geom.collection as gc

distributed = pytest.importorskip("distributed")


def clouds(seed, C=30, N=64, D=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(C, N, D, generator=g) * (0.5 + torch.rand(C, 1, 1, generator=g)) + torch.randn(C, 1, D,
                                                                                                     generator=g)


@pytest.fixture(scope="module")
def threads_client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def test_in_process_cluster_gives_the_same_bits(threads_client):
    x = clouds(0)
    here = gc.embed(x, n_projections=16, seed=0)
    there = gc.embed(x, n_projections=16, seed=0, client=threads_client)
    assert torch.equal(here.vectors, there.vectors) and torch.equal(here.error, there.error)
    a = gc.pairwise(here, block_size=7)
    b = gc.pairwise(here, block_size=7, client=threads_client)
    assert torch.equal(a, b)
    y = gc.embed(clouds(1, C=9), directions=here.directions)
    assert torch.equal(gc.pairwise(here, y, block_size=4), gc.pairwise(here, y, block_size=4, client=threads_client))


def test_weighted_and_other_orders_give_the_same_bits(threads_client):
    import geom

    g = torch.Generator().manual_seed(3)
    x = clouds(9, C=14)
    mu = geom.measure(x, weights=torch.rand(x.shape[:2], generator=g) + 0.1)
    for p in (1.0, 2.0, 3.0):
        here = gc.embed(mu, n_projections=6, seed=1, n_quantiles=40, p=p)
        there = gc.embed(mu, n_projections=6, seed=1, n_quantiles=40, p=p, client=threads_client)
        assert torch.equal(here.vectors, there.vectors) and torch.equal(here.error, there.error)
        assert torch.equal(gc.pairwise(here, block_size=4), gc.pairwise(here, block_size=4, client=threads_client))


def test_knn_on_dask_gives_the_same_bits(threads_client):
    emb = gc.embed(clouds(7, C=25), n_projections=8, seed=0)
    here = gc.knn(emb, k=4, block_size=6)
    there = gc.knn(emb, k=4, block_size=6, client=threads_client)
    assert torch.equal(here[0], there[0]) and torch.equal(here[1], there[1])
    q = gc.embed(clouds(8, C=7), directions=emb.directions)
    a, b = gc.knn(q, emb, k=3, block_size=6), gc.knn(q, emb, k=3, block_size=6, client=threads_client)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_files_are_read_and_embedded_on_the_workers(threads_client, tmp_path):
    x = clouds(2, C=20)
    paths = []
    for k, item in enumerate(x):
        path = tmp_path / f"cloud-{k:02d}.npy"
        np.save(path, item.numpy())
        paths.append(path)
    here = gc.embed(paths, n_projections=8, seed=3)
    there = gc.embed(paths, n_projections=8, seed=3, client=threads_client)
    assert torch.equal(here.vectors, there.vectors) and there.n_quantiles == 64
    assert torch.equal(here.vectors, gc.embed(x, n_projections=8, seed=3).vectors)


def test_blocks_stream_to_disk_and_resume_on_dask(threads_client, tmp_path):
    emb = gc.embed(clouds(3), n_projections=8, seed=0)
    want = gc.pairwise(emb, block_size=5)
    gc.pairwise(emb, block_size=5, out=tmp_path, client=threads_client)
    files = sorted(tmp_path.glob("block-*.npy"))
    assert len(files) == 21  # 6 x 6 blocks, 21 in the upper triangle
    for f in files[::2]:
        f.unlink()  # an interrupted run: some blocks missing
    assert torch.equal(gc.pairwise(emb, block_size=5, out=tmp_path, client=threads_client), want)


def test_scheduler_address_is_accepted(threads_client):
    emb = gc.embed(clouds(4, C=10), n_projections=4, seed=0)
    assert torch.equal(gc.pairwise(emb, client=threads_client.scheduler.address), gc.pairwise(emb))


def test_worker_processes_give_the_same_bits_and_survive_a_killed_worker(tmp_path):
    x = clouds(5, C=160, N=256)
    emb = gc.embed(x, n_projections=32, seed=0)  # 8192-dimensional vectors
    want = gc.pairwise(emb, block_size=8)  # 20 x 20 blocks, 210 to compute
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)
    try:
        assert torch.equal(gc.embed(x, n_projections=32, seed=0, client=client).vectors, emb.vectors)
        assert torch.equal(gc.pairwise(emb, block_size=8, client=client), want)

        pids = client.run(os.getpid)
        killed = {}

        def kill_one_mid_run():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                n = len(list(tmp_path.glob("block-*.npy")))
                if n >= 3:
                    killed["done_before"] = n
                    os.kill(next(iter(pids.values())), signal.SIGKILL)
                time.sleep(0.002)

        watcher = threading.Thread(target=kill_one_mid_run)
        watcher.start()
        got = gc.pairwise(emb, block_size=8, client=client, out=tmp_path)
        watcher.join()
        assert killed and killed["done_before"] < 210  # the worker died while blocks were still to do
        assert torch.equal(got, want)
    finally:
        client.close()
        cluster.close()


def test_command_on_two_worker_processes_gives_the_single_process_matrix(tmp_path, capsys):
    from cli_helpers import run

    x = clouds(6, C=12, N=32)
    folder = tmp_path / "shapes"
    folder.mkdir()
    for k, item in enumerate(x):
        np.save(folder / f"s{k:02d}.npy", item.numpy())
    rc, _, err = run(capsys, "collection", "matrix", folder, "--out", tmp_path / "here", "--n-projections", 8)
    assert rc == 0, err
    rc, _, err = run(capsys, "collection", "matrix", folder, "--out", tmp_path / "there", "--n-projections", 8,
                     "--workers", 2)
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "here" / "matrix.npy"), np.load(tmp_path / "there" / "matrix.npy"))
