"""The mesh-deformation benchmark: one --quick run on one tiny target in a temporary folder (every method
and metric in the JSON, the Markdown and the figure next to it), the folded-sphere generator (seeded,
far from the sphere, genus 0, embedded), and PyTorch3D's regularisers against hand computations on a
tetrahedron and against geom's own PyTorch3D normal consistency."""

import json
import math

import numpy as np
import pytest
import torch

from geom.deform import MeshTopology, icosphere, normal_loss
from geom.deform.intersect import self_intersections
from geom.deform.metrics import normal_smoothness
from geom_tools import deform_bench as db

# corners 0 = origin, 1, 2, 3 = unit axes; faces wound outward
TETRA_V = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
TETRA_F = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("deform") / "sub" / "deform.json"
    assert db.main(["--quick", "--targets", "ellipsoid", "--out", str(out)]) == 0
    return json.loads(out.read_text()), out


def test_the_json_has_every_method_and_metric_and_the_table_and_figure_next_to_it(quick):
    doc, out = quick
    assert [(r["target"], r["method"]) for r in doc["rows"]] == [("ellipsoid", m) for m in db.METHODS]
    for row in doc["rows"]:
        for key in db.METRICS:
            assert key in row and math.isfinite(row[key]), key
        assert row["seconds"] > 0 and 0 <= row["self_intersection_fraction"] <= 1
        assert row["self_intersecting_faces"] == round(row["self_intersection_fraction"] * row["n_faces"])
    assert [t["n_samples"] for t in doc["timing"]] == list(db.QUICK["timing_sizes"])
    for t in doc["timing"]:
        assert t["sw"] > 0 and t["chamfer"] > 0 and t["speedup"] == pytest.approx(t["chamfer"] / t["sw"])
    assert {"ode_no_self_intersection", "chamfer_within_1.5x_anchor", "normal_agreement_at_least_anchor",
            "ode_under_5_min_per_target"} <= set(doc["verdicts"])
    assert all(isinstance(v["met"], bool) for v in doc["verdicts"].values())
    table = out.with_suffix(".md").read_text()
    for method in db.METHODS:
        assert f"| ellipsoid | {method} |" in table
    assert sorted(f.name for f in out.parent.iterdir()) == ["deform.json", "deform.md", "deform.png"]


def test_the_folded_sphere_is_seeded_far_from_the_sphere_genus_zero_and_embedded():
    v, f = db.folded_sphere(3, seed=5)
    again, f2 = db.folded_sphere(3, seed=5)
    assert torch.equal(v, again) and torch.equal(f, f2)
    assert not torch.allclose(v, db.folded_sphere(3, seed=6)[0])
    r = v.norm(dim=1)
    assert float((r - 1).abs().max()) > 0.45 and float(r.min()) > 0.3  # deep folds, never through the centre
    assert float(r.std()) > 0.1
    topo = MeshTopology(f)
    assert topo.n_vertices - len(topo.edges) + len(f) == 2 and topo.genus == 0
    assert not self_intersections(v.numpy(), f.numpy()).mask.any()
    d = icosphere(2)[0].numpy()
    assert np.allclose(db.folded_radius(d, seed=5), db.folded_radius(d, seed=5))


def test_pytorch3d_recipe_losses_equal_hand_computations_on_a_tetrahedron():
    topo = MeshTopology(TETRA_F)
    # edges: three of squared length 1 (from the origin), three of 2
    assert float(db.p3d_edge_loss(TETRA_V, topo)) == pytest.approx(1.5)
    # every vertex has the three others as neighbours: |mean - x| is 1/sqrt(3) at the origin, sqrt(11)/3 elsewhere
    assert float(db.p3d_laplacian_smoothing(TETRA_V, topo)) == pytest.approx((1 / math.sqrt(3) + math.sqrt(11)) / 4)
    # the 3 edges at the origin join perpendicular faces (1 - 0); the 3 others an axis face and the slanted one
    expected = (3 * 1.0 + 3 * (1 + 1 / math.sqrt(3))) / 6
    assert float(db.p3d_normal_consistency(TETRA_V, TETRA_F)) == pytest.approx(expected)
    assert normal_smoothness(TETRA_V, TETRA_F) == pytest.approx(expected)
    # PyTorch3D's normal consistency does not depend on the winding of the faces
    flipped = TETRA_F[:, [0, 2, 1]]
    assert float(db.p3d_normal_consistency(TETRA_V, flipped)) == pytest.approx(expected)


def test_pytorch3d_losses_match_geoms_references_and_are_differentiable():
    v, f = db.folded_sphere(2, seed=1)
    topo = MeshTopology(f)
    assert float(db.p3d_normal_consistency(v, f)) == pytest.approx(normal_smoothness(v, f), rel=1e-9)
    assert float(db.p3d_normal_consistency(v, f)) == pytest.approx(float(normal_loss(v, f, topo)), rel=1e-9)
    x = v.clone().requires_grad_()
    total = db.p3d_edge_loss(x, topo) + db.p3d_laplacian_smoothing(x, topo) + db.p3d_normal_consistency(x, f)
    total.backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    # the anchor's loss goes down on a small problem
    target = db.unit_ball(db.folded_sphere(2, seed=1)[0]), f
    result = db.anchor(icosphere(1), target, steps=20, n_samples=500)
    assert result["history"]["chamfer"][-1] < result["history"]["chamfer"][0]
