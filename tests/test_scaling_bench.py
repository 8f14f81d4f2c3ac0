"""The scaling benchmark and the core benchmark's new rows: one small run each, checked against what
their numbers must satisfy (every sweep point present, consistent ratios, geom's batched values those of
a POT loop over the pairs)."""

import json

import numpy as np
import pytest

from geom_tools import bench, scaling_bench


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("scaling") / "sub" / "scaling"
    assert scaling_bench.main(["--quick", "--out", str(out)]) == 0
    return json.loads(out.with_suffix(".json").read_text()), out


def test_every_sweep_point_is_measured_and_written(quick):
    doc, out = quick
    assert [(r["sweep"], r[r["sweep"]]) for r in doc["rows"]] == [
        (sweep, value) for sweep, values in scaling_bench.QUICK.items() for value in values]
    for r in doc["rows"]:
        assert r["geom_s"] > 0 and r["sort_floor_s"] > 0 and r["projection_s"] > 0
        assert r["geom_over_floor"] == pytest.approx(r["geom_s"] / r["sort_floor_s"])
        assert r["projections_bytes"] == 2 * r["N"] * r["L"] * 4
        assert r["gradients"] == "kept"  # the quick sizes are far below the store's limit
    assert out.with_suffix(".md").read_text().count("\n| ") == len(doc["rows"]) + 1
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batched_pairs_agree_with_the_pot_loop():
    pytest.importorskip("ot")
    (row,) = bench.run_batched([(3, 64, 8)], reps=1)
    assert row["relative_gap_to_pot"] < 1e-5
    assert row["pot_over_geom"] == pytest.approx(row["pot_loop_s"] / row["geom_s"])
    assert row["own_floor_s"] > 0 and row["pot_over_own_floor"] == pytest.approx(row["pot_loop_s"] / row["own_floor_s"])


def test_geoms_floor_sorts_the_rows_as_packed_keys_where_the_order_is_needed(monkeypatch):
    from geom._ot1d import kernels

    rng = np.random.default_rng(0)
    ux, uy = rng.standard_normal((5, 300)).astype(np.float32), rng.standard_normal((4, 200)).astype(np.float32)
    sorted_rows = []
    real = kernels.sorted_keys
    monkeypatch.setattr(kernels, "sorted_keys", lambda a, keys: sorted_rows.append(real(a, keys).copy()))
    values = bench.row_sorts(ux, uy, 2, (True, False))()
    keys = np.concatenate(sorted_rows).astype(np.float32)  # every row of ux once, in order (the threads in any order)
    assert sorted(map(tuple, keys)) == sorted(map(tuple, np.sort(ux, axis=1)))
    np.testing.assert_array_equal(np.concatenate([v for v in values if v is not None]), np.sort(uy, axis=1))


def test_the_plain_torch_sort_implementation_is_sw2():
    x, y, theta = bench._batched_problem(2, 50, 7)
    import geom

    expected = geom.sliced_wasserstein(x, y, directions=theta)
    assert bench.torch_sort_value_grad(x, y, theta).detach().allclose(expected, rtol=1e-5)


def test_the_embedding_and_plan_rows_time_what_they_name():
    e = bench.run_embedding(6, 200, 5, reps=1)
    assert e["embed_s"] > 0 and e["embed_over_floor"] == pytest.approx(e["embed_s"] / e["floor_s"])
    plan = bench.run_plan(500, 8, reps=1)
    assert plan["plan_over_value"] == pytest.approx(plan["plan_s"] / plan["sw_value_s"])
