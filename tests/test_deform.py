"""geom.deform: the neural-ODE diffeomorphism (inverse, Jacobian, closed form), the deformation loop
(loss decrease for both methods, batches, seeds, normalisation), templates, regularisers and errors."""

import json
import math
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import geom
import geom.deform as gd
from geom.deform.losses import edge_loss, laplacian_loss, mean_squared_edge, normal_loss
from geom.deform.ode import NeuralODEDeformation, VelocityField

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "datasets" / "samples"
ELLIPSOID = str(SAMPLES / "ellipsoid.ply")


@pytest.fixture(autouse=True)
def one_thread():
    """Small meshes: one thread is many times faster than two contending for shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_deformation(seed=0, **options):
    return NeuralODEDeformation(final_scale=1.0, generator=torch.Generator().manual_seed(seed), **options)


def points(n=50, seed=1):
    return torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


class Linear(torch.nn.Module):
    """v(x, t) = A x: the flow map is expm(A)."""

    def __init__(self, A):
        super().__init__()
        self.A = torch.nn.Parameter(A)

    def forward(self, x, t):
        return x @ self.A.T


# ------------------------------------------------------------------ templates


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_icosphere_counts_radius_outward_and_closed(level):
    v, f = gd.icosphere(level, radius=1.7)
    assert v.dtype == torch.float64 and f.dtype == torch.int64
    assert v.shape == (10 * 4**level + 2, 3) and f.shape == (20 * 4**level, 3)
    assert torch.allclose(v.norm(dim=1), torch.full((len(v),), 1.7, dtype=torch.float64))
    tri = v[f]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    assert bool(((normal * tri.mean(1)).sum(1) > 0).all())  # outward
    half = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    assert len(torch.unique(half, dim=0)) == len(half)  # each directed edge once: consistently oriented
    topo = gd.MeshTopology(f)
    assert bool((topo.counts == 2).all()) and topo.euler == 2 and topo.genus == 0


def test_genus_of_the_bundled_torus_and_sphere():
    assert gd.genus(geom.io.read_mesh(SAMPLES / "torus.ply")[1]) == 1
    assert gd.genus(geom.io.read_mesh(SAMPLES / "sphere.ply")[1]) == 0


# ------------------------------------------------------------------ the flow map


def test_inverse_undoes_forward_to_the_order_of_rk4():
    x = points()
    errors = []
    for steps in (16, 32):  # the default field (Fourier features) bends at the unit scale: 16 steps are asymptotic
        phi = random_deformation(steps=steps)
        y = phi(x).detach()
        assert (y - x).abs().max() > 0.3  # a real deformation, not the identity
        errors.append(float((phi.inverse(y) - x).detach().abs().max()))
    assert errors[1] < 1e-7
    assert errors[0] / errors[1] > 12  # fourth order: 2^4 = 16 per halving of the step (RK4 there and back: ~32)


@pytest.mark.parametrize("options, tol", [(dict(method="dopri5", rtol=1e-8, atol=1e-10), 1e-6),
                                          (dict(adjoint=True, steps=32), 1e-7)])
def test_inverse_with_adaptive_and_adjoint_solvers(options, tol):
    x = points()
    phi = random_deformation(**options)
    with torch.no_grad():
        assert float((phi.inverse(phi(x)) - x).abs().max()) < tol


def test_adjoint_gradients_match_direct_backpropagation():
    x = points(10)
    grads = []
    for adjoint in (False, True):
        phi = random_deformation(steps=32, adjoint=adjoint)  # the adjoint's backward solve: error O(steps^-4)
        phi(x).pow(2).sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in phi.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=0, atol=1e-6 * float(grads[0].abs().max()))  # measured: 1e-7 of it


def test_linear_field_flows_by_the_matrix_exponential():
    A = torch.tensor([[0.3, -1.0, 0.2], [0.8, -0.4, 0.1], [0.0, 0.5, 0.2]], dtype=torch.float64)
    phi = NeuralODEDeformation(Linear(A), steps=20)
    x = points(20)
    expm = torch.linalg.matrix_exp(A)
    assert torch.allclose(phi(x), x @ expm.T, atol=1e-6)
    assert torch.allclose(phi.inverse(x), x @ torch.linalg.matrix_exp(-A).T, atol=1e-6)
    J = torch.autograd.functional.jacobian(lambda p: phi(p[None])[0], x[0])
    assert torch.allclose(J, expm, atol=1e-6)
    assert math.isclose(float(torch.linalg.det(J)), math.exp(float(A.trace())), rel_tol=1e-6)  # Liouville


def jacobian_determinants(phi, x):
    return torch.stack([torch.linalg.det(torch.autograd.functional.jacobian(lambda q: phi(q[None])[0], p)) for p in x])


@pytest.mark.parametrize("seed", [3, 4])
def test_jacobian_determinant_is_positive_for_a_strong_field(seed):
    phi = NeuralODEDeformation(final_scale=4.0, generator=torch.Generator().manual_seed(seed))
    x = points(6, seed=4)
    dets = jacobian_determinants(phi, x)
    assert float((dets - 1).abs().max()) > 0.5  # far from a rigid motion
    assert bool((dets > 0).all()), dets


def test_solver_error_flags_a_grid_too_coarse_for_the_field():
    """A field strong enough that 8 RK4 steps fold the map (a negative Jacobian determinant: the exact
    flow's is positive) has a solver error of the order of the motion; 32 steps fix both."""
    x = points(6, seed=4)
    coarse = NeuralODEDeformation(final_scale=8.0, generator=torch.Generator().manual_seed(3), steps=8)
    fine = NeuralODEDeformation(final_scale=8.0, generator=torch.Generator().manual_seed(3), steps=32)
    assert bool((jacobian_determinants(coarse, x) < 0).any())
    assert bool((jacobian_determinants(fine, x) > 0).all())
    motion = float((fine(x) - x).norm(dim=-1).max())
    assert float(coarse.solver_error(x)) > 0.01 * motion
    assert float(fine.solver_error(x)) < 1e-2 * float(coarse.solver_error(x))


def test_stationary_field_ignores_time_and_the_default_does_not():
    g = torch.Generator().manual_seed(0)
    x = points(5)
    still = VelocityField(stationary=True, final_scale=1.0, generator=g)
    moving = VelocityField(final_scale=1.0, generator=g)
    assert torch.equal(still(x, 0.0), still(x, 0.7))
    assert not torch.allclose(moving(x, 0.0), moving(x, 0.7))


def test_batched_points_move_as_single_point_sets_and_fields_select():
    phi = random_deformation()
    x = torch.stack([points(7, 1), points(7, 2)])
    y = phi(x)
    assert torch.allclose(y[1], phi(x[1]), atol=1e-13)
    two = NeuralODEDeformation(VelocityField(final_scale=1.0, n_fields=2, generator=torch.Generator().manual_seed(5)))
    y = two(x)
    assert torch.allclose(y[1], two.select(1)(x[1]), atol=1e-13)
    assert not torch.allclose(y[0], two.select(1)(x[0]))  # the fields differ


def test_state_dict_round_trip_moves_other_meshes_alike():
    result = gd.deform(gd.icosphere(1), ELLIPSOID, steps=3, n_projections=16)
    assert torch.allclose(result.deformation(gd.icosphere(1)[0][None])[0], result.vertices, atol=1e-12)
    fresh = NeuralODEDeformation()
    fresh.load_state_dict(result.deformation.state_dict())
    other = gd.icosphere(2)[0]
    assert torch.equal(fresh(other), result.deformation(other))
    assert not torch.allclose(fresh(other), other)


# ------------------------------------------------------------------ the deformation loop


@pytest.mark.parametrize("method", ["ode", "vertices"])
def test_a_short_deformation_decreases_the_varifold_sw(method):
    result = gd.deform(gd.icosphere(2), ELLIPSOID, steps=30, method=method, regularizers={})
    data = result.history["data"]
    assert data.shape == (31,) and float(data[-1]) < 0.7 * float(data[0])
    radius = result.settings["target"][0]["radius"]
    _, scale = geom.measures.normalization(geom.measure(geom.io.read_mesh(ELLIPSOID)[0]), "sphere")
    assert math.isclose(radius, float(scale[0]), rel_tol=1e-12)
    assert torch.allclose(result.history["loss"], data**2 / radius**2)  # no regularisers: SW_2^2 in target radii
    assert (result.deformation is None) == (method == "vertices")


@pytest.mark.parametrize("method", ["ode", "vertices"])
def test_deform_is_equivariant_under_similarities(method):
    """Moving and scaling template and target together moves and scales the result alike: the field
    works in its template's frame, the objective in target radii and free vertices step in them, so
    nothing depends on the data's position or size (every random draw is the same)."""
    template, target = gd.icosphere(1), geom.io.read_mesh(ELLIPSOID)
    target = (torch.as_tensor(target[0], dtype=torch.float64), torch.as_tensor(target[1]))
    shift, c = torch.tensor([40.0, -7.0, 3.0], dtype=torch.float64), 250.0
    similar = lambda mesh: (c * mesh[0] + shift, mesh[1])  # noqa: E731
    options = dict(steps=5, n_projections=16, method=method)
    a = gd.deform(template, target, **options)
    b = gd.deform(similar(template), similar(target), **options)
    assert torch.allclose(b.vertices, c * a.vertices + shift, rtol=0, atol=1e-9 * c)
    assert torch.allclose(b.history["loss"], a.history["loss"], rtol=1e-8)
    assert torch.allclose(b.history["data"], c * a.history["data"], rtol=1e-8)
    assert float((a.vertices - template[0]).abs().max()) > 1e-2  # it did move


def test_chamfer_loss_and_point_cloud_targets():
    cloud = torch.as_tensor(geom.io.sample_surface(*geom.io.read_mesh(ELLIPSOID), 800, seed=1), dtype=torch.float64)
    chamfer = gd.deform(gd.icosphere(2), cloud, loss="chamfer", steps=20, method="vertices", n_samples=500)
    assert float(chamfer.history["data"][-1]) < 0.7 * float(chamfer.history["data"][0])
    sw = gd.deform(gd.icosphere(2), cloud, kind="mesh", steps=20, method="vertices", kind_options=dict(n_samples=500))
    assert float(sw.history["data"][-1]) < 0.7 * float(sw.history["data"][0])


@pytest.mark.parametrize("kind", ["varifold", "mesh-discrete"])
def test_point_cloud_targets_refuse_kinds_that_need_faces(kind):
    with pytest.raises(ValueError, match=rf"kind: '{kind}' needs the target's faces"):
        gd.deform(gd.icosphere(1), points(30), kind=kind, steps=1)


def test_regularizers_enter_the_loss_with_their_weights():
    w = dict(edge=0.5, laplacian=0.2, normal=0.1)
    result = gd.deform(gd.icosphere(1), ELLIPSOID, steps=3, n_projections=16, regularizers=w)
    h = result.history
    expected = h["data"] ** 2 / result.settings["target"][0]["radius"] ** 2 + sum(weight * h[name] for name, weight in w.items())
    assert torch.allclose(h["loss"], expected)
    assert float(h["edge"][0]) > 0  # level 1 has two edge lengths


def test_regularizers_closed_forms_on_the_icosahedron():
    v, f = gd.icosphere(0)
    topo = gd.MeshTopology(f)
    assert math.isclose(float(mean_squared_edge(v, topo)), 2 - 2 / math.sqrt(5))  # edge^2 of the unit icosahedron
    assert float(edge_loss(v, topo)) < 1e-28  # all edges equal
    # neighbours of a vertex lie at dot product 1/sqrt(5): their mean is v / sqrt(5)
    assert math.isclose(float(laplacian_loss(v, topo)), (1 - 1 / math.sqrt(5)) / 2)
    assert math.isclose(float(normal_loss(v, f, topo)), 1 - math.sqrt(5) / 3)  # dihedral angle's cosine
    stretched = v * torch.tensor([1.0, 1.0, 2.0], dtype=v.dtype)  # edges of several lengths: a positive edge term
    for term in (lambda x: edge_loss(x, topo), lambda x: laplacian_loss(x, topo), lambda x: normal_loss(x, f, topo)):
        assert math.isclose(float(term(3 * stretched + 1)), float(term(stretched)), rel_tol=1e-12)  # free of scale, position
    assert float(edge_loss(stretched, topo)) > 0.01


def test_normalisation_makes_the_result_free_of_the_template_frame():
    template = gd.icosphere(1)
    moved = (5 * template[0] + torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64), template[1])
    a = gd.deform(template, ELLIPSOID, steps=4, n_projections=16, normalize="sphere")
    b = gd.deform(moved, ELLIPSOID, steps=4, n_projections=16, normalize="sphere")
    assert torch.allclose(a.vertices, b.vertices, atol=1e-9)
    assert math.isclose(b.settings["template"][0]["scale"], 5.0)
    assert b.settings["normalize"] == "sphere"
    assert json.loads(json.dumps(b.settings)) == b.settings  # plain data, as the tools write it


def test_same_seed_same_result_bit_for_bit_and_another_seed_differs():
    run = lambda seed: gd.deform(gd.icosphere(1), ELLIPSOID, steps=4, n_projections=16, seed=seed)  # noqa: E731
    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a.vertices, b.vertices) and torch.equal(a.history["loss"], b.history["loss"])
    assert not torch.equal(a.vertices, c.vertices)


@pytest.mark.parametrize("method", ["ode", "vertices"])
@pytest.mark.parametrize("kind", ["varifold", "mesh"])
def test_batches_give_what_separate_calls_give(method, kind):
    templates = [gd.icosphere(1), gd.icosphere(2, radius=0.9)]
    targets = [ELLIPSOID, (gd.icosphere(1)[0] * torch.tensor([1.0, 1.4, 0.8], dtype=torch.float64), gd.icosphere(1)[1])]
    options = dict(steps=4, n_projections=16, kind=kind, method=method, kind_options=dict(n_samples=300) if kind == "mesh" else None)
    batch = gd.deform(templates, targets, **options)
    assert batch.history["data"].shape == (5, 2)
    for k in range(2):
        alone = gd.deform(templates[k], targets[k], **options)
        assert batch.vertices[k].shape == alone.vertices.shape
        assert torch.equal(batch.faces[k], alone.faces)
        assert torch.allclose(batch.vertices[k], alone.vertices, rtol=0, atol=1e-9)
        assert torch.allclose(batch.history["data"][:, k], alone.history["data"], rtol=1e-9, atol=0)
        if method == "ode":
            single = batch.deformation.select(k).state_dict()
            for name, value in alone.deformation.state_dict().items():
                assert torch.allclose(single[name], value, rtol=0, atol=1e-9)


def test_one_shared_field_for_a_batch():
    result = gd.deform(gd.icosphere(1), [ELLIPSOID, gd.icosphere(2, radius=1.2)], steps=3, n_projections=16,
                       shared=True)
    assert result.deformation.field.n_fields == 1 and len(result.vertices) == 2
    field = result.deformation
    for moved in result.vertices:  # one map moved both
        assert torch.allclose(field(gd.icosphere(1)[0]), moved, atol=1e-12)


def test_a_batch_mixes_mesh_and_point_cloud_targets_of_kind_mesh():
    cloud = gd.icosphere(2, radius=1.3)[0]
    batch = gd.deform(gd.icosphere(1), [ELLIPSOID, cloud], kind="mesh", steps=3, n_projections=16)
    alone = gd.deform(gd.icosphere(1), cloud, kind="mesh", steps=3, n_projections=16)
    assert batch.history["data"].shape == (4, 2)
    assert torch.allclose(batch.vertices[1], alone.vertices, rtol=0, atol=1e-9)


def test_training_continues_from_a_given_deformation_which_is_left_as_it_is():
    first = gd.deform(gd.icosphere(1), ELLIPSOID, steps=3, n_projections=16)
    before = {name: value.clone() for name, value in first.deformation.state_dict().items()}
    start = []
    second = gd.deform(gd.icosphere(1), ELLIPSOID, steps=2, n_projections=16, deformation=first.deformation,
                       callback=lambda step, vertices, values: start.append(vertices) if step == 0 else None)
    assert torch.allclose(start[0], first.vertices, atol=1e-12)
    assert all(torch.equal(value, before[name]) for name, value in first.deformation.state_dict().items())
    assert not torch.allclose(second.vertices, first.vertices)


def test_callback_sees_every_row_and_can_stop():
    seen = []

    def callback(step, vertices, values):
        seen.append((step, vertices.shape, float(values["data"])))
        return step == 2

    result = gd.deform(gd.icosphere(1), ELLIPSOID, steps=10, n_projections=16, callback=callback)
    assert [s for s, _, _ in seen] == [0, 1, 2] and len(result.history["data"]) == 3
    assert [d for _, _, d in seen] == result.history["data"].tolist()


def test_a_template_of_another_genus_warns_naming_both():
    with pytest.warns(geom.GeomWarning, match=r"genus 0 and the target genus 1"):
        gd.deform(gd.icosphere(1), str(SAMPLES / "torus.ply"), steps=1, n_projections=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gd.deform(gd.icosphere(1), ELLIPSOID, steps=1, n_projections=8)


# ------------------------------------------------------------------ errors


def non_manifold():
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], dtype=torch.float64)
    return v, torch.tensor([[0, 1, 2], [1, 0, 3], [0, 1, 4]])  # edge (0, 1) in three faces


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(template=(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.long))), ValueError, "template: expected a non-empty"),
    (dict(template=non_manifold()), ValueError, r"template: expected a manifold mesh .* edge \[0, 1\] in 3 faces"),
    (dict(template="no-such-file.ply"), FileNotFoundError, "template: no such file 'no-such-file.ply'"),
    (dict(template=np.zeros((4, 3))), TypeError, "template: expected a"),
    (dict(steps=0), ValueError, "steps: expected a positive integer, got 0"),
    (dict(steps=-3), ValueError, "steps: expected a positive integer"),
    (dict(lr=0.0), ValueError, "lr: expected a real number > 0"),
    (dict(lr=-1e-3), ValueError, "lr: expected a real number > 0"),
    (dict(method="adam"), ValueError, r"method: expected one of \['ode', 'vertices'\]"),
    (dict(loss="l2"), ValueError, r"loss: expected one of \['sw', 'chamfer'\]"),
    (dict(kind="points"), ValueError, "kind: expected one of"),
    (dict(regularizers=dict(smooth=1.0)), ValueError, "regularizers: expected names among"),
    (dict(regularizers=dict(edge=-1.0)), ValueError, r"regularizers\['edge'\]: expected a real number >= 0"),
    (dict(normalize="unit"), ValueError, "normalize: expected 'sphere', 'box' or None"),
    (dict(ode=dict(method="rk45")), ValueError, "method: expected a torchdiffeq solver"),
    (dict(ode=dict(steps=0)), ValueError, "steps: expected a positive integer"),
    (dict(target=[]), ValueError, "target: expected a non-empty list"),
    (dict(template=[gd.icosphere(0)] * 2, target=[ELLIPSOID] * 3), ValueError, "lists of one length"),
])
def test_errors_name_the_argument(kwargs, error, match):
    args = dict(template=gd.icosphere(1), target=ELLIPSOID, steps=1, n_projections=8) | kwargs
    with pytest.raises(error, match=match):
        gd.deform(args.pop("template"), args.pop("target"), **args)


def test_geom_imports_without_torchdiffeq_and_deform_names_the_extra():
    code = """
import sys
import geom
assert 'torchdiffeq' not in sys.modules, 'import geom imported torchdiffeq'
sys.modules['torchdiffeq'] = None
import geom.deform as gd
phi = gd.NeuralODEDeformation()
try:
    gd.deform(gd.icosphere(0), gd.icosphere(0, radius=2.0), steps=1, n_projections=4)
except ImportError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "geom.deform needs torchdiffeq: pip install 'geom[deform]'" in out.stdout


def test_mesh_flow_tool_runs_through_geom_deform(tmp_path):
    from geom_tools import mesh_flow

    source = gd.icosphere(1, radius=0.8)
    target = geom.io.read_mesh(ELLIPSOID)
    final, curve, snapshots = mesh_flow.flow(source, target, steps=6, every=3, n_projections=16)
    assert final.shape == (42, 3) and [s for s, _ in curve] == list(range(7)) and sorted(snapshots) == [0, 3, 6]
    direct = gd.deform(source, target, method="vertices", steps=6, n_projections=16)
    assert np.array_equal(final, direct.vertices.numpy())
    assert mesh_flow.main(["--steps", "2", "--n-projections", "8", "--out", str(tmp_path), "--method", "ode"]) == 0
    assert (tmp_path / "mesh-flow-cube-varifold-ode.png").is_file()
    assert (tmp_path / "mesh-flow-cube-varifold-ode.json").is_file()


def test_deform_warns_when_the_solver_may_fold_the_surface():
    strong = NeuralODEDeformation(final_scale=8.0, generator=torch.Generator().manual_seed(3), steps=4)
    with pytest.warns(geom.GeomWarning, match=r"ode: the solver's error .* may fold the surface; give ode=\{'steps': 8\}"):
        result = gd.deform(gd.icosphere(1), ELLIPSOID, steps=1, n_projections=8, lr=1e-9, deformation=strong)
    assert result.settings["solver_error"] > 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error", geom.GeomWarning)
        calm = gd.deform(gd.icosphere(1), ELLIPSOID, steps=2, n_projections=8)
    assert 0 <= calm.settings["solver_error"] < 1e-6


def test_warmup_fades_the_fourier_features_in_and_the_returned_map_reproduces_the_result():
    template = gd.icosphere(1)
    result = gd.deform(template, ELLIPSOID, steps=6, n_projections=8, warmup=12)
    field = result.deformation.field
    assert float(field.fourier_weight) == 0.5  # the last row was measured after 6 of 12 warm-up updates
    with torch.no_grad():
        assert torch.allclose(result.deformation(template[0]), result.vertices, rtol=0, atol=1e-12)
    # continued with its Adam state, the warm-up goes on from 6 updates; given alone, the weight stays
    more = gd.deform(template, ELLIPSOID, steps=3, n_projections=8, warmup=12, deformation=result.deformation,
                     optimizer_state=result.optimizer_state)
    assert float(more.deformation.field.fourier_weight) == 0.75
    alone = gd.deform(template, ELLIPSOID, steps=2, n_projections=8, warmup=12, deformation=result.deformation)
    assert float(alone.deformation.field.fourier_weight) == 0.5
    none = gd.deform(template, ELLIPSOID, steps=2, n_projections=8, warmup=0)
    assert float(none.deformation.field.fourier_weight) == 1.0
