"""A sweep of bad and edge inputs through every public entry point, and a few through the CLI.

Every case either returns a valid result (finite where it must be, of the right shape) or raises a
``ValueError`` / ``TypeError`` whose message names the argument (one of the case's ``names``):
never another exception, a hang, an attempt to allocate gigabytes, or a NaN or overflow reported as
a number. Cases marked ``ok`` must succeed (numpy integers are integers, weights beyond the data's
dtype are normalised, ...); cases marked ``error`` must refuse (a silently wrong result is a bug).
Where Python's protocols want another exception (``FileNotFoundError`` for a missing file,
``IndexError`` for an index out of range), the case allows it, and its message must name the argument.
While a case runs, the memory geom believes it has is capped at 2 GiB, the process may not grow by
more than 3 GiB, and it has 20 seconds.
"""

from __future__ import annotations

import math
import resource
import signal
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch

import geom
import geom._checks
import geom.io
import geom_datasets.loaders
from geom.flows import FlowResult, conditional_swf, sw_flow, swf
from geom_plugins import graph, mesh, spd, sphere
from geom_plugins.cv import ControlVariates

from cli_helpers import assert_user_error, run

CAP = 2 << 30  # what geom may believe it has: requests for more are refused, never attempted
GROWTH = 3 << 30  # what a case may really allocate
BIG, HUGE = 10**9, 10**18
G = torch.Generator().manual_seed(0)
X, Y = torch.randn(6, 3, generator=G), torch.randn(5, 3, generator=G)  # N != M: the weighted paths
S, T = (torch.nn.functional.normalize(torch.randn(n, 3, generator=G), dim=1) for n in (5, 4))
_A = torch.randn(5, 3, 3, generator=G, dtype=torch.float64)
SPD = _A @ _A.transpose(1, 2) + 0.5 * torch.eye(3, dtype=torch.float64)  # (5, 3, 3)
V = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
F = torch.tensor([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
PATH = np.diag(np.ones(5), 1) + np.diag(np.ones(5), -1)  # a path graph of 6 nodes
DOMAIN = graph.GraphDomain(PATH, n_eigenpairs=3)
W6 = np.arange(1.0, 7.0)
ROWS = torch.nn.functional.normalize(torch.randn(2, 12, generator=G, dtype=torch.float64), dim=1)  # 3x3 SPD directions
sw = geom.sliced_wasserstein
LEARNED = ("aswd", "dsw", "max", "vmf-dsw")


@dataclass
class Case:
    call: Callable
    names: tuple[str, ...]  # an error must name one of these
    expect: str = "either"  # "ok", "error" or "either"
    check: Callable | None = None  # further check of a valid result
    allowed: tuple[type, ...] = ()  # further exception types that are the right answer (IndexError, ...)


CASES: dict[str, Case] = {}


def case(name, call, *names, expect="either", check=None, allowed=()):
    assert name not in CASES, name
    CASES[name] = Case(call, names or ("obj",), expect, check, allowed)


def grad_of(f, t):
    t = t.clone().requires_grad_()
    return torch.autograd.grad(f(t), t)[0]


# ----------------------------------------------------------------------------- geom.measure, every kind

for label, obj in {
    "empty": torch.zeros(0, 3), "0-d": torch.tensor(1.0), "4-d": torch.zeros(1, 1, 1, 3), "nan": torch.tensor([[math.nan, 0.0]]),
    "-inf": torch.tensor([[-math.inf, 0.0]]), "complex": torch.zeros(3, 2, dtype=torch.complex64),
    "bool": torch.ones(3, 2, dtype=torch.bool), "None": None, "float": 3.0, "str": "no such file.ply", "bytes": b"x",
    "ragged": [[1, 2], [3]], "strings": [["a", "b"]], "meta": torch.zeros(3, 2, device="meta"), "no points in batch": torch.zeros(2, 0, 3),
    "no coordinates": torch.zeros(4, 0), "object array": np.array([object()] * 3), "numpy 0-d": np.float64(1.0),
}.items():
    case(f"points {label}", lambda obj=obj: geom.measure(obj), "obj", allowed=(FileNotFoundError,))
for label, obj in {"float16": X.half(), "bfloat16": X.bfloat16(), "int": torch.arange(12).reshape(4, 3),
                   "non-contiguous": torch.randn(3, 4, generator=G).T, "expanded": X[:1].expand(4, 3),
                   "requires grad": X.clone().requires_grad_(), "uint64": np.full((2, 3), 2**64 - 1, np.uint64),
                   "3e38": torch.full((2, 3), 3e38), "1e-45": torch.full((2, 3), 1e-45)}.items():
    case(f"points {label}", lambda obj=obj: geom.measure(obj), expect="ok")
for label, w in {"nan": [math.nan, 1, 1, 1, 1, 1], "negative": [-1, 1, 1, 1, 1, 1], "zeros": [0] * 6, "inf": [math.inf] * 6,
                 "short": [1, 1], "2-d": [[1] * 6], "str": "abcdef", "bool": [True] * 6, "complex": np.ones(6, complex),
                 "objects": [object()] * 6, "0-d": 1.0, "meta": torch.ones(6, device="meta")}.items():
    case(f"weights {label}", lambda w=w: geom.measure(X, weights=w), "weights")
for label, w in {"3e38": [3e38] * 6, "1e-45": [1e-45] * 6, "float64 1e300 on float32": np.full(6, 1e300),
                 "float64 1e-320 on float32": np.full(6, 1e-320), "ints": [1, 2, 3, 4, 5, 6], "float16": np.ones(6, np.float16)}.items():
    case(f"weights {label}", lambda w=w: geom.measure(X, weights=w), expect="ok")
case("kind unknown", lambda: geom.measure(X, kind="nope"), "kind")
case("kind not a string", lambda: geom.measure(X, kind=["points"]), "kind")
case("options with an array", lambda: geom.measure(X, n_samples=3), "n_samples")

for kind in ("mesh", "mesh-discrete", "varifold"):
    for label, (v, f) in {"float faces": (V, F.float()), "faces out of range": (V, F + 10), "negative faces": (V, F - 10),
                          "faces on meta": (V, F.to("meta")), "vertices on meta": (V.to("meta"), F), "nan vertices": (V * math.nan, F),
                          "2-D vertices": (V[:, :2], F), "no faces": (V, torch.zeros(0, 3, dtype=torch.long)),
                          "degenerate": (V, torch.tensor([[0, 0, 0]])), "string faces": (V, [["a", "b", "c"]]),
                          "ragged faces": (V, [[0, 1, 2], [0, 1]]), "huge faces": (V, torch.full((1, 3), 2**62))}.items():
        case(f"{kind} {label}", lambda v=v, f=f, kind=kind: geom.measure((v, f), kind=kind), "faces", "vertices")
    for label, (v, f) in {"uint64 faces": (V, F.numpy().astype(np.uint64)), "vertices 1e20": (V * 1e20, F),
                          "vertices 1e-45": (V * 1e-45, F), "float16 vertices": (V.half(), F)}.items():
        case(f"{kind} {label}", lambda v=v, f=f, kind=kind: geom.measure((v, f), kind=kind), expect="ok")
    case(f"{kind} empty list", lambda kind=kind: geom.measure([], kind=kind), "obj")
    case(f"{kind} bad item", lambda kind=kind: geom.measure([(V, F), 3], kind=kind), "obj[1]")
    case(f"{kind} array", lambda kind=kind: geom.measure(V, kind=kind), "obj")
    case(f"{kind} weights", lambda kind=kind: geom.measure((V, F), kind=kind, weights=[1] * 4), "weights")
    case(f"{kind} unknown option", lambda kind=kind: geom.measure((V, F), kind=kind, bogus=1), "bogus")
for label, n in {"0": 0, "-1": -1, "1e9": BIG, "1e18": HUGE, "float": 3.0, "bool": True, "None": None}.items():
    case(f"mesh n_samples={label}", lambda n=n: geom.measure((V, F), kind="mesh", n_samples=n), "n_samples")
for label, s in {"-1": -1, "float": 1.5, "None": None, "bool": True}.items():
    case(f"mesh seed={label}", lambda s=s: geom.measure((V, F), kind="mesh", seed=s), "seed")
case("mesh_tensors faces on meta", lambda: mesh.mesh_tensors((V, F.to("meta"))), "faces")
case("mesh_tensors a triple", lambda: mesh.mesh_tensors((V, F, F)), "obj")
case("mesh_tensors a number", lambda: mesh.mesh_tensors(3), "obj")
case("face_geometry of a mesh at 1e20", lambda: mesh.face_geometry(V * 1e20, F)[2], expect="ok")  # the normals
case("mesh n_samples numpy", lambda: geom.measure((V, F), kind="mesh", n_samples=np.int64(5), seed=np.int64(3)), expect="ok")
for label, s in {"0": 0, "nan": math.nan, "inf": math.inf, "1e300": 1e300, "str": "a", "bool": True}.items():
    case(f"varifold normal_scale={label}", lambda s=s: geom.measure((V, F), kind="varifold", normal_scale=s), "normal_scale")
case("varifold normal_scale 1e30 then SW", lambda: sw(geom.measure((V, F), kind="varifold", normal_scale=1e30),
                                                       geom.measure((2 * V, F[:3]), kind="varifold"), seed=0), expect="ok")

for label, obj in {"off the sphere": S * 2, "zero": torch.zeros(3, 3), "d = 1": torch.ones(3, 1), "nan": S * math.nan,
                   "meta": S.to("meta"), "empty": torch.zeros(0, 3)}.items():
    case(f"sphere {label}", lambda obj=obj: geom.measure(obj, kind="sphere"), "obj")
case("sphere normalize=1", lambda: geom.measure(S, kind="sphere", normalize=1), "normalize")
case("sphere normalize 3e38", lambda: geom.measure(S * 3e38, kind="sphere", normalize=True), expect="ok")

for kind in ("spd", "spd-logsw", "spd-affine"):
    for label, obj in {"singular": torch.zeros(2, 3, 3), "nearly singular": torch.diag_embed(torch.tensor([[1.0, 1.0, 1e-9]])),
                       "not symmetric": SPD + torch.triu(torch.ones(3, 3, dtype=torch.float64), 1), "nan": SPD * math.nan,
                       "not square": torch.ones(2, 3, 2), "2-D": torch.eye(3), "0 x 0": torch.ones(3, 0, 0), "meta": SPD.to("meta"),
                       "huge entries": SPD.float() * 3e37, "shape file": "no such file.ply"}.items():
        case(f"{kind} {label}", lambda obj=obj, kind=kind: geom.measure(obj, kind=kind), "obj")
    case(f"{kind} atol", lambda kind=kind: geom.measure(SPD, kind=kind, atol=math.nan), "atol")
    case(f"{kind} 1 x 1", lambda kind=kind: geom.measure(torch.ones(3, 1, 1), kind=kind), expect="ok")

case("graph not a domain", lambda: geom.measure(np.ones(3), kind="graph"), "obj")
case("graph dtype string", lambda: geom.measure(DOMAIN, kind="graph", dtype="float32"), "dtype")
for label, nodes in {"out of range": [0, 99], "negative": [-1], "float": [0.5], "empty": [], "3-D": [[[0]]], "str": "ab",
                     "meta": torch.tensor([0, 1], device="meta"), "bool": [True, False], "objects": [object()], "2**70": [2**70]}.items():
    case(f"graph nodes {label}", lambda nodes=nodes: geom.measure(DOMAIN, kind="graph", nodes=nodes), "nodes")
case("graph nodes uint64", lambda: geom.measure(DOMAIN, kind="graph", nodes=np.array([0, 5], np.uint64)), expect="ok")
for label, w in {"meta": torch.ones(6, device="meta"), "3-D": np.ones((1, 2, 6)), "str": "abc", "nan": W6 * math.nan}.items():
    case(f"graph weights {label}", lambda w=w: geom.measure(DOMAIN, kind="graph", weights=w), "weights")

# ----------------------------------------------------------------------------- sliced_wasserstein and its schemes

for name in geom.schemes():
    for label, (x, y) in {"3e38": (torch.full((3, 3), 3e38), Y), "-3e38 vs 3e38": (torch.full((3, 3), -3e38), torch.full((2, 3), 3e38)),
                          "dimensions": (X, Y[:, :2]), "batch sizes": (X.expand(2, 6, 3), Y.expand(3, 5, 3))}.items():
        case(f"sw {name} {label}", lambda x=x, y=y, name=name: sw(x, y, scheme=name, seed=0, n_projections=4), "mu, nu")
    for label, kw in {"n_projections 0": dict(n_projections=0), "n_projections 1e9": dict(n_projections=BIG),
                      "n_projections 1e18": dict(n_projections=HUGE), "n_projections float": dict(n_projections=8.0),
                      "n_projections bool": dict(n_projections=True)}.items():
        case(f"sw {name} {label}", lambda kw=kw, name=name: sw(X, Y, scheme=name, seed=0, **kw), "n_projections")
    case(f"sw {name} unknown option", lambda name=name: sw(X, Y, scheme=name, bogus=1), "bogus")
    case(f"sw {name} weights option", lambda name=name: sw(X, Y, scheme=name, weights=[1] * 6), "weights: belongs")
    for label, (x, y) in {"huge": (X * 1e37, Y * 1e37), "tiny": (X * 1e-44, Y * 1e-44), "far": (X + 1e30, Y + 1e30),
                          "float16": (X.half(), Y.half()), "numpy ints": (X, Y)}.items():
        kw = dict(p=np.int64(2), n_projections=np.int64(4), seed=np.int64(3)) if label == "numpy ints" else dict(seed=0, n_projections=4)
        # a learned lifting is not scale-free, and learned directions need gradients of subnormal data: errors there
        extreme = (name == "aswd" and label in ("huge", "tiny", "far")) or (name in LEARNED and label == "tiny")
        case(f"sw {name} {label}", lambda x=x, y=y, kw=kw, name=name: sw(x, y, scheme=name, **kw), "mu, nu",
             expect="either" if extreme else "ok")
    case(f"sw {name} p=1e6", lambda name=name: sw(X, Y, scheme=name, p=1e6, seed=0, n_projections=4), expect="ok")
    case(f"sw {name} gradient p=1e300", lambda name=name: grad_of(
        lambda t: sw(t, Y, scheme=name, p=1e300, seed=0, n_projections=4), X), "p")
    case(f"sw {name} gradient p=1e6", lambda name=name: grad_of(
        lambda t: sw(t, Y, scheme=name, p=1e6, seed=0, n_projections=4), X), "p")
for label, p in {"0.5": 0.5, "nan": math.nan, "inf": math.inf, "str": "2", "complex": 2j, "bool": True, "None": None}.items():
    case(f"sw p={label}", lambda p=p: sw(X, Y, p=p), "p")
for label, kw in {"seed 2**64": dict(seed=2**64), "seed float": dict(seed=1.0), "seed str": dict(seed="1"),
                  "generator int": dict(generator=3), "generator numpy": dict(generator=np.random.default_rng(0)),
                  "seed and generator": dict(seed=0, generator=torch.Generator())}.items():
    case(f"sw {label}", lambda kw=kw: sw(X, Y, **kw), "seed", "generator")
case("sw seed negative, numpy and 2**64 - 1", lambda: (sw(X, Y, seed=-5), sw(X, Y, seed=np.int64(3)), sw(X, Y, seed=2**64 - 1)),
     expect="ok")
for label, d in {"wrong shape": torch.ones(2, 3, 1), "no rows": torch.zeros(0, 3), "not unit": torch.ones(2, 3),
                 "nan": torch.full((2, 3), math.nan), "meta": torch.ones(2, 3, device="meta"), "str": "abc",
                 "complex": torch.ones(2, 3, dtype=torch.complex64)}.items():
    case(f"sw directions {label}", lambda d=d: sw(X, Y, directions=d), "directions")
case("sw directions non-contiguous, expanded, float16", lambda: (
    sw(X, Y, directions=torch.eye(3).T), sw(X, Y, directions=torch.eye(3)[:1].expand(4, 3)),
    sw(X, Y, directions=torch.eye(3).half())), expect="ok")
case("sw scheme not a name", lambda: sw(X, Y, scheme=3), "scheme")
case("sw scheme unknown", lambda: sw(X, Y, scheme="nope"), "scheme")
case("sw return_result string", lambda: sw(X, Y, return_result="yes"), "return_result", expect="error")
case("sw kind option", lambda: sw(X, Y, kind="sphere"), "kind: belongs")
case("sw devices", lambda: sw(X, Y.to("meta")), "obj")
case("sw batch of one broadcasts", lambda: sw(X[None], Y.expand(3, 5, 3)), expect="ok",
     check=lambda r: tuple(r.shape) == (3,))
case("cv gamma numpy float32", lambda: sw(X, Y, scheme=ControlVariates(gamma=np.float32(0.5)), seed=0), expect="ok")
case("cv gamma nan", lambda: ControlVariates(gamma=math.nan), "gamma")
case("qmc energy point set beyond memory", lambda: sw(X, Y, scheme="qmc", n_projections=10**5), "n_projections")
case("aswd hidden beyond memory", lambda: sw(X, Y, scheme="aswd", hidden=10**12), "hidden")
case("aswd lifted_dim beyond memory", lambda: sw(X, Y, scheme="aswd", lifted_dim=10**12), "lifted_dim")
case("aswd fit_projections beyond memory", lambda: sw(X, Y, scheme="aswd", fit_projections=10**12), "fit_projections")
case("dsw n_samples beyond memory", lambda: sw(X, Y, scheme="dsw", n_samples=10**12), "n_samples")
case("vmf-dsw kappa 1e300", lambda: sw(X, Y, scheme="vmf-dsw", kappa=1e300, n_steps=2, seed=0), expect="ok")

# sphere, spd and graph through the core
MS, MT = geom.measure(S, kind="sphere"), geom.measure(T, kind="sphere")
for p in (100.0, 300.0, 1e6):
    case(f"sphere p={p:g} is not 0", lambda p=p: sw(MS, MT, p=p, seed=0, n_projections=8), expect="ok",
         check=lambda r: float(r) > 0.1)
case("sphere gradient p=100", lambda: grad_of(lambda t: sw(geom.measure(t, kind="sphere"), MT, p=100, seed=0,
                                                             n_projections=16), S), expect="ok")
case("sphere directions of rank 1", lambda: sw(MS, MT, directions=torch.ones(2, 6) / math.sqrt(6)), "directions",
     expect="error")
case("sphere directions on meta", lambda: sw(MS, MT, directions=torch.ones(2, 6, device="meta")), "directions")
case("sphere uniform n_projections 1e18", lambda: sphere.sliced_wasserstein_sphere_uniform(S, n_projections=HUGE),
     "n_projections")
case("sphere uniform p", lambda: sphere.sliced_wasserstein_sphere_uniform(S, p=3), "p")
case("sphere uniform return_result", lambda: sphere.sliced_wasserstein_sphere_uniform(S, return_result="no"), "return_result",
     expect="error")
case("sphere frames not orthonormal", lambda: sphere.frames_to_directions(torch.ones(2, 3, 2)), "frames")
for kind in ("spd", "spd-affine"):
    case(f"{kind} directions with a zero P block", lambda kind=kind: sw(
        geom.measure(SPD, kind=kind), geom.measure(SPD * 2, kind=kind),
        directions=torch.tensor([[1.0, 0, 0] + [0] * 9], dtype=torch.float64)), "directions", expect="error")
    case(f"{kind} p=1e6", lambda kind=kind: sw(geom.measure(SPD, kind=kind), geom.measure(SPD * 2, kind=kind),
                                                p=1e6, seed=0, n_projections=4), expect="ok")

# ----------------------------------------------------------------------------- spd, sphere and graph helpers

for label, call in {
    "matrices_to_rows str": lambda: spd.matrices_to_rows("abc"), "matrices_to_rows objects": lambda: spd.matrices_to_rows([object()]),
    "matrices_to_rows meta": lambda: spd.matrices_to_rows(torch.eye(2, device="meta")[None]),
    "matrices_to_rows nan": lambda: spd.matrices_to_rows(torch.full((1, 2, 2), math.nan)),
    "matrices_to_rows none": lambda: spd.matrices_to_rows(torch.zeros(0, 2, 2)),
    "matrices_to_rows float16": lambda: spd.matrices_to_rows((torch.eye(2)[None] / math.sqrt(2)).half()),
    "rows_to_matrices rank-deficient": lambda: spd.rows_to_matrices(torch.ones(2, 12) / math.sqrt(12), 3),
    "rows_to_matrices n str": lambda: spd.rows_to_matrices(ROWS, "a"), "rows_to_matrices n wrong": lambda: spd.rows_to_matrices(ROWS, 2),
    "sym_to_vec 0-d": lambda: spd.sym_to_vec(torch.tensor(1.0)), "sym_to_vec not square": lambda: spd.sym_to_vec(torch.ones(3, 2)),
    "vec_to_sym 0-d": lambda: spd.vec_to_sym(torch.tensor(1.0)), "vec_to_sym length": lambda: spd.vec_to_sym(torch.ones(5)),
    "spd_log 1-D": lambda: spd.spd_log(torch.ones(3)), "spd_log negative": lambda: spd.spd_log(-SPD),
    "check_spd a list": lambda: spd.check_spd([[1.0]], batched=False),
    "covariances 2-D": lambda: spd.covariances(torch.randn(4, 20)), "covariances shrinkage 2": lambda: spd.covariances(torch.randn(3, 4, 20), shrinkage=2),
}.items():
    case(f"spd {label}", call, "A", "n", "S", "v", "X", "x", "directions", "shrinkage", "obj")
for label, call in {
    "rows_to_matrices list": lambda: spd.rows_to_matrices(ROWS.tolist(), 3), "sym_to_vec list": lambda: spd.sym_to_vec([[1.0, 0.0], [0.0, 1.0]]),
    "vec_to_sym list": lambda: spd.vec_to_sym([1.0, 2.0, 3.0]), "spd_log list": lambda: spd.spd_log([[2.0, 0.0], [0.0, 1.0]]),
}.items():
    case(f"spd {label}", call, expect="ok")

for label, adj in {"1 x 1": np.ones((1, 1)), "not square": np.ones((2, 3)), "nan": PATH * math.nan, "negative": -PATH,
                   "not symmetric": np.triu(PATH), "str": "abc", "None": None, "3-D": np.ones((2, 2, 2)), "complex": PATH.astype(complex),
                   "meta": torch.tensor(PATH, device="meta"), "1e308": PATH * 1e308, "ragged": [[0, 1], [1]]}.items():
    case(f"GraphDomain {label}", lambda adj=adj: graph.GraphDomain(adj, n_eigenpairs=2).alpha, "adjacency", "stiffness")
case("GraphDomain float16", lambda: graph.GraphDomain(PATH.astype(np.float16), n_eigenpairs=2).alpha, expect="ok")
for label, kw in {"heat t=1e300": dict(weighting="heat", t=1e300), "power s=1e300": dict(weighting="power", s=1e300),
                  "n_eigenpairs 0": dict(n_eigenpairs=0), "n_eigenpairs 100": dict(n_eigenpairs=100), "weighting": dict(weighting="x")}.items():
    case(f"GraphDomain {label}", lambda kw=kw: graph.intrinsic_sliced_wasserstein(  # weights 0 or inf: never a distance
        np.ones(6), W6, graph.GraphDomain(PATH, **{"n_eigenpairs": 2, **kw})), "weighting", "n_eigenpairs", expect="error")
case("GraphDomain tiny edge weights", lambda: graph.intrinsic_sliced_wasserstein(
    np.ones(6), W6, graph.GraphDomain(PATH * 1e-160, n_eigenpairs=2)), "weighting")
for p in (1e6, 1e300):
    case(f"isw p={p:g}", lambda p=p: graph.intrinsic_sliced_wasserstein(np.ones(6), W6, DOMAIN, p=p), expect="ok",
         check=lambda r: float(r) > 0)
case("isw normalize string", lambda: graph.intrinsic_sliced_wasserstein(W6, W6, DOMAIN, normalize="yes"), "normalize",
     expect="error")
case("isw domain", lambda: graph.intrinsic_sliced_wasserstein(W6, W6, "G"), "domain")
case("isw weights on meta", lambda: graph.intrinsic_sliced_wasserstein(W6, torch.ones(6, device="meta"), DOMAIN), "nu")
case("hilbert n_quantiles 1e9", lambda: graph.hilbert_embedding(np.ones((3, 6)), DOMAIN, n_quantiles=BIG), "n_quantiles")
case("hilbert n_quantiles 1e18", lambda: graph.hilbert_embedding(np.ones((3, 6)), DOMAIN, n_quantiles=HUGE), "n_quantiles")
case("collection test progress string", lambda: graph.collection_test(np.ones((3, 6)), W6 * np.ones((3, 1)), DOMAIN, seed=0,
                                                                     n_permutations=5, progress="no"), "progress",
     expect="error")
for label, (v, f) in {"meta": (torch.zeros(4, 3, device="meta"), F), "1e200": (V.double() * 1e200, F), "1e300": (V.double() * 1e300, F),
                      "faces out of range": (V, F + 10), "str": ("abc", F), "float faces": (V, F.float())}.items():
    case(f"MeshDomain {label}", lambda v=v, f=f: graph.MeshDomain(v, f, n_eigenpairs=2).alpha, "mesh", "faces", "stiffness")
case("cotangent_laplacian faces out of range", lambda: graph.cotangent_laplacian(V, F + 10), "faces")
case("cotangent_laplacian strings", lambda: graph.cotangent_laplacian("a", "b"), "vertices", "faces")

# ----------------------------------------------------------------------------- reductions and the sliced energy

REDUCTIONS = {"chamfer": geom.chamfer_distance, "energy": geom.energy_distance, "hausdorff": geom.hausdorff_distance,
              "sliced energy": lambda x, y, **kw: geom.sliced_energy_distance(x, y, seed=0, n_projections=8, **kw)}
for label, f in REDUCTIONS.items():
    for what, (x, y) in {"3e38": (torch.full((3, 3), 3e38), Y), "-3e38 vs 3e38": (torch.full((3, 3), -3e38), torch.full((2, 3), 3e38)),
                         "dimensions": (X, Y[:, :2]), "batch sizes": (X.expand(2, 6, 3), Y.expand(3, 5, 3)),
                         "kind spd-affine": (geom.measure(SPD, kind="spd-affine"), geom.measure(SPD, kind="spd-affine"))}.items():
        case(f"{label} {what}", lambda x=x, y=y, f=f: f(x, y), "mu, nu")
    case(f"{label} 1e20", lambda f=f: f(X * 1e20, Y * 1e20), "mu, nu", expect="either" if label == "chamfer" else "ok")
    case(f"{label} far from the origin", lambda f=f: f(X + 1e7, Y + 1e7), expect="ok")
    case(f"{label} 1e-30", lambda f=f: f(X * 1e-30, Y * 1e-30), "mu, nu", expect="error" if label == "chamfer" else "ok")
    case(f"{label} gradient", lambda f=f: grad_of(lambda t: f(t, Y), X), expect="ok")
    if label != "sliced energy":
        case(f"{label} backend", lambda f=f: f(X, Y, backend=["dense"]), "backend")
case("chamfer 1e20 is out of float32", lambda: geom.chamfer_distance(X * 1e20, Y * 1e20), "mu, nu", expect="error")
case("chamfer 1e-40 underflows float32", lambda: geom.chamfer_distance(X * 1e-40, Y * 1e-40), "mu, nu", expect="error")
SED = geom.sliced_energy_distance
case("sliced energy weights option", lambda: SED(X, Y, weights=[1] * 6), "weights: belongs")
case("sliced energy directions on meta", lambda: SED(X, Y, directions=torch.ones(1, 3, device="meta")), "directions")
case("sliced energy n_projections 1e18", lambda: SED(X, Y, n_projections=HUGE), "n_projections")
case("sliced energy learned scheme", lambda: SED(X, Y, scheme="max"), "scheme")
case("sliced energy return_result", lambda: SED(X, Y, return_result=1), "return_result", expect="error")
case("energy_slicing_constant numpy", lambda: geom.energy_slicing_constant(np.int64(3)), expect="ok")
case("energy_slicing_constant 0", lambda: geom.energy_slicing_constant(0), "d")

# ----------------------------------------------------------------------------- flows

FLOWS = {
    "sw_flow": lambda **kw: sw_flow(X, Y, **{"steps": 2, "lr": 0.1, "seed": 0, **kw}),
    "swf": lambda **kw: swf(X, Y, **{"steps": 2, "step_size": 0.5, "seed": 0, **kw}),
    "conditional_swf": lambda **kw: conditional_swf(X, Y, [0, 1] * 3, [0, 1, 0, 1, 0], **{
        "steps": 2, "step_size": 0.5, "label_scale": 1.0, "seed": 0, **kw}),
    "mmd_flow": lambda **kw: geom.mmd_flow(X, Y, **{"steps": 2, "seed": 0, **kw}),
}
STOP = dict(callback=lambda *args: False)  # stop after the first step
for label, flow in FLOWS.items():
    for what, kw in {"steps 0": dict(steps=0), "steps float": dict(steps=2.0), "seed 2**64": dict(seed=2**64),
                     "seed and generator": dict(generator=torch.Generator()), "record_every 0": dict(record_every=0),
                     "record_every list": dict(record_every=[5]), "record_every str": dict(record_every="1"),
                     "n_projections 1e18": dict(n_projections=HUGE), "eval_projections 1e18": dict(eval_projections=HUGE),
                     "callback": dict(callback=3), "unknown option": dict(bogus=1), "weights option": dict(weights=[1] * 6),
                     "every step of 1e18": dict(steps=HUGE, record_every=1, **STOP)}.items():
        case(f"{label} {what}", lambda flow=flow, kw=kw: flow(**kw), *kw, "generator", "bogus", "weights: belongs")
    case(f"{label} numpy integers", lambda flow=flow: flow(steps=np.int64(2), n_projections=np.int64(4),
                                                          record_every=np.int64(1), seed=np.int64(1)), expect="ok",
         check=lambda r: len(r.steps) == 3)
    case(f"{label} record_every numpy list", lambda flow=flow: flow(record_every=[np.int64(0), np.int64(2)]), expect="ok")
    case(f"{label} 1e18 steps, stopped", lambda flow=flow: flow(steps=HUGE, **STOP), expect="ok")
    case(f"{label} source on meta", lambda label=label: _flow_with(label, X.to("meta")), "source")
case("sw_flow lr 1e300 on float32", lambda: FLOWS["sw_flow"](lr=1e300), "lr")
case("sw_flow lr 1e300 on float32, sgd", lambda: FLOWS["sw_flow"](lr=1e300, optimizer="sgd"), "lr")
case("sw_flow optimizer_state without betas", lambda: FLOWS["sw_flow"](
    optimizer_state={"state": {0: {"step": torch.tensor(1.0)}}, "param_groups": [{"params": [0], "lr": 0.1}]}), "optimizer_state")
case("sw_flow optimizer_state of another shape", lambda: FLOWS["sw_flow"](optimizer_state={
    "state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(2, 2), "exp_avg_sq": torch.zeros(2, 2)}},
    "param_groups": [{**torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.1).state_dict()["param_groups"][0]}]}),
    "optimizer_state")
case("sw_flow optimizer_state junk", lambda: FLOWS["sw_flow"](optimizer_state={"state": {}, "param_groups": "x"}), "optimizer_state")
case("sw_flow optimizer list", lambda: FLOWS["sw_flow"](optimizer=["adam"]), "optimizer")
case("sw_flow p 1e6", lambda: FLOWS["sw_flow"](p=1e6), "p")
case("swf step_size inf", lambda: FLOWS["swf"](step_size=math.inf), "step_size")
for what, mask in {"str": "abc", "ragged": [[True], [False, True]], "ints": [1, 0, 0], "shape": [True] * 5,
                   "meta": torch.ones(3, dtype=torch.bool, device="meta")}.items():
    case(f"swf mask {what}", lambda mask=mask: FLOWS["swf"](mask=mask), "mask")
case("swf mask numpy bools", lambda: FLOWS["swf"](mask=np.array([True, False, False])), expect="ok")
case("conditional_swf label_scale 1e300", lambda: FLOWS["conditional_swf"](label_scale=1e300), "label_scale")
for what, (ls, lt) in {"objects": ([object()] * 6, [object()] * 5), "nan": ([math.nan] * 6, [math.nan] * 5),
                       "2-D": (np.zeros((6, 1)), [0] * 5), "None": (None, [0] * 5), "missing class": ([2] * 6, [0] * 5),
                       "mixed": ([0] * 6, [0, "a", 0, 1, 0])}.items():
    case(f"conditional_swf labels {what}", lambda ls=ls, lt=lt: conditional_swf(
        X, Y, ls, lt, steps=2, step_size=0.5, label_scale=1.0, seed=0), "source_labels", "target_labels")
for what, v in {"str": "abc", "complex": torch.zeros(6, 3, dtype=torch.complex64), "nan": torch.full((6, 3), math.nan),
                "shape": torch.zeros(2, 3), "meta": torch.zeros(6, 3, device="meta")}.items():
    case(f"mmd_flow velocity {what}", lambda v=v: FLOWS["mmd_flow"](velocity=v), "velocity", expect="error")
case("mmd_flow lr 1e300 on float32", lambda: FLOWS["mmd_flow"](lr=1e300), "lr")


def _flow_with(label, source):
    calls = {"sw_flow": lambda: sw_flow(source, Y, steps=2, lr=0.1, seed=0),
             "swf": lambda: swf(source, Y, steps=2, step_size=0.5, seed=0),
             "conditional_swf": lambda: conditional_swf(source, Y, [0] * 6, [0] * 5, steps=2, step_size=0.5,
                                                        label_scale=1.0, seed=0),
             "mmd_flow": lambda: geom.mmd_flow(source, Y, steps=2, seed=0)}
    return calls[label]()


# ----------------------------------------------------------------------------- datasets

GENERATED = {"gaussians": ["d", "n_points", "n_per_class", "n_classes", "n_components", "separation", "seed"],
             "shapes": ["n_per_class", "n_points", "seed", "noise", "bend"],
             "spd": ["n_channels", "n_times", "n_classes", "n_per_class", "n_matrices", "noise", "seed"],
             "sphere-mixtures": ["d", "n_classes", "n_components", "kappa", "n_points", "n_items", "seed"]}
for dataset, options in GENERATED.items():
    for option in options:
        for label, value in {"-1": -1, "1e18": HUGE, "2**64": 2**64, "nan": math.nan, "1e300": 1e300, "str": "x", "None": None,
                             "bool": True, "list": [1]}.items():
            case(f"{dataset} {option}={label}", lambda d=dataset, o=option, v=value: _first_and_last(geom.load_dataset(d, **{o: v})),
                 option)
    case(f"{dataset} unknown option", lambda d=dataset: geom.load_dataset(d, bogus=1), "bogus")
    case(f"{dataset} root", lambda d=dataset: geom.load_dataset(d, root="/tmp"), "root")
    case(f"{dataset} numpy options", lambda d=dataset: _first_and_last(geom.load_dataset(d, seed=np.int64(2))), expect="ok")
    for label, index in {"len": 10**6, "1e18": HUGE, "float": 1.0, "str": "0", "None": None, "bool": True}.items():
        case(f"{dataset} index {label}", lambda d=dataset, i=index: geom.load_dataset(d)[i], "index", allowed=(IndexError,))
for dataset in ("folder", "hdf5", "modelnet", "shapenet"):
    case(f"{dataset} without root", lambda d=dataset: geom.load_dataset(d), "root")
    case(f"{dataset} root an int", lambda d=dataset: geom.load_dataset(d, root=3), "root")
    case(f"{dataset} root missing", lambda d=dataset: geom.load_dataset(d, root="/no/such/folder"), "root",
         allowed=(FileNotFoundError,))
    case(f"{dataset} unknown option", lambda d=dataset: geom.load_dataset(d, root="/tmp", bogus=1), "bogus")
case("load_dataset name", lambda: geom.load_dataset(3), "name")
case("load_dataset unknown", lambda: geom.load_dataset("nope"), "name")
case("digits classes", lambda: geom.load_dataset("digits", classes=[99]), "classes")
case("airports kind", lambda: geom.load_dataset("airports", kind="spd"), "kind")


def _first_and_last(dataset):
    return dataset[0], dataset[len(dataset) - 1]


# ----------------------------------------------------------------------------- geom.io

for label, (v, f) in {"vertices str": ("abc", F), "faces str": (V, "abc"), "vertices objects": ([object()] * 3, F),
                      "float faces": (V, [[0.0, 1, 2]]), "faces out of range": (V, [[0, 1, 5]]), "nan": (V * math.nan, F),
                      "1-D vertices": ([0, 1, 2], F), "1-D faces": (V, [0, 1, 2]), "no faces": (V, np.zeros((0, 3), int)),
                      "vertices on meta": (torch.zeros(4, 3, device="meta"), F), "vertices 1e300": (V.double() * 1e300, F),
                      "vertices 1e200": (V.double() * 1e200, F), "complex": (V.numpy().astype(complex), F), "None": (None, F)}.items():
    case(f"sample_surface {label}", lambda v=v, f=f: geom.io.sample_surface(v, f, 4), "vertices", "faces")
for label, (v, f) in {"uint64 faces": (V, F.numpy().astype(np.uint64)), "tensors": (V, F), "bool vertices": (V.bool(), F)}.items():
    case(f"sample_surface {label}", lambda v=v, f=f: geom.io.sample_surface(v, f, 4), expect="ok")
case("surface_draws vertices 1e200", lambda: geom.io.surface_draws(V.double() * 1e200, F, 8), expect="ok",
     check=lambda r: bool((np.bincount(r[0], minlength=4) > 0).sum() > 1))
for label, n in {"0": 0, "-1": -1, "1e9": BIG, "1e18": HUGE, "float": 2.0, "bool": True, "None": None, "str": "4"}.items():
    case(f"sample_surface n_samples={label}", lambda n=n: geom.io.sample_surface(V, F, n), "n_samples")
for label, s in {"-1": -1, "None": None, "float": 1.5, "str": "a", "bool": True}.items():
    case(f"sample_surface seed={label}", lambda s=s: geom.io.sample_surface(V, F, 4, seed=s), "seed", expect="error")
    case(f"read_points seed={label}", lambda s=s: geom.io.read_points((V.numpy(), F.numpy()), seed=s), "seed", "obj")
case("sample_surface seeds beyond 64 bits", lambda: geom.io.sample_surface(V, F, 4, seed=2**200), expect="ok")
for label, obj in {"None": None, "int": 3, "missing": "no such file.ply", "directory": "/tmp", "bytes": b"abc", "array": np.zeros((3, 3)),
                   "unknown suffix": "/tmp/x.unknown"}.items():
    case(f"read_points {label}", lambda obj=obj: geom.io.read_points(obj), "obj", allowed=(FileNotFoundError,))
    case(f"read_mesh {label}", lambda obj=obj: geom.io.read_mesh(obj), "obj", allowed=(FileNotFoundError,))
for label, obj in {"None": None, "int": 3, "wrong suffix": "x.ply", "missing": "/tmp/no such file.npy", "directory": "/tmp"}.items():
    case(f"read_array {label}", lambda obj=obj: geom.io.read_array(obj), "obj", allowed=(FileNotFoundError,))


@pytest.fixture(scope="module")
def npy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("arrays")
    arrays = {"0d": np.float64(3.0), "1d": np.arange(5.0), "bool": np.ones((3, 3), bool), "empty": np.zeros((0, 3)),
              "f16": np.zeros((3, 3), np.float16), "big": np.full((3, 3), 1e300)}
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    return folder


ARRAY_FILES = {  # file -> (what read_array gives, whether geom.measure takes it as points)
    "0d": ((), False), "1d": ((5,), True), "bool": (None, False), "empty": ((0, 3), False), "f16": ((3, 3), True),
    "big": ((3, 3), False),
}

# ----------------------------------------------------------------------------- the sweep


class _Hang(BaseException):
    """A case ran past its time."""


def _alarm(signum, frame):
    raise _Hang("the case did not finish in 20 s")


@pytest.fixture
def bounded(monkeypatch):
    """geom believes it has at most 2 GiB; the process may grow by at most 3 GiB; 20 s per case."""
    capped = lambda real=geom._checks.available_memory: min(real(), CAP)  # noqa: E731
    for module in (geom._checks, geom.io, geom_datasets.loaders):
        monkeypatch.setattr(module, "available_memory", capped)
    with open("/proc/self/status") as fh:
        data = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmData:"))
    old_limit = resource.getrlimit(resource.RLIMIT_DATA)
    limit = data + GROWTH if old_limit[1] == resource.RLIM_INFINITY else min(data + GROWTH, old_limit[1])
    resource.setrlimit(resource.RLIMIT_DATA, (limit, old_limit[1]))
    old_handler = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old_handler)
        resource.setrlimit(resource.RLIMIT_DATA, old_limit)


def _finite(result) -> bool:
    """Every number of a result is finite (tensors, arrays, measures, sliced and flow results)."""
    if isinstance(result, torch.Tensor):
        return not result.is_floating_point() or bool(torch.isfinite(result.detach()).all())
    if isinstance(result, np.ndarray):
        return result.dtype.kind not in "fc" or bool(np.isfinite(result).all())
    if isinstance(result, geom.Measure):
        sums = result.weights.detach().double().sum(-1)
        return _finite(result.support) and _finite(result.weights) and bool(torch.allclose(sums, torch.ones_like(sums)))
    if isinstance(result, geom.SlicedResult):
        return _finite(result.value)
    if isinstance(result, FlowResult):
        return _finite(result.particles) and _finite(result.values) and _finite(result.trajectory)
    if isinstance(result, (tuple, list)):
        return all(_finite(r) for r in result)
    if isinstance(result, float):
        return math.isfinite(result)
    return True


def _outcome(call):
    try:
        return call(), None
    except (ValueError, TypeError) as exc:
        return None, exc


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_a_valid_result_or_an_error_naming_the_argument(bounded, name):
    c = CASES[name]
    try:
        result, error = _outcome(c.call)
    except c.allowed or () as exc:  # the right answer for that case (a missing file, an index out of range)
        assert any(n in str(exc) for n in c.names), f"{type(exc).__name__}: {exc}"
        return
    if error is not None:
        assert c.expect != "ok", f"expected a result, got {type(error).__name__}: {error}"
        assert any(n in str(error) for n in c.names), f"the error names none of {c.names}: {type(error).__name__}: {error}"
        return
    assert c.expect != "error", f"expected an error naming one of {c.names}, got a result: {result!r}"[:500]
    assert _finite(result), f"a non-finite result reported as a number: {result!r}"[:500]
    assert c.check is None or c.check(result), f"the result fails its check: {result!r}"[:500]


@pytest.mark.parametrize("name", list(ARRAY_FILES))
def test_array_files_behave_like_the_arrays_they_hold(bounded, npy, name):
    shape, as_points = ARRAY_FILES[name]
    path = npy / f"{name}.npy"
    array, error = _outcome(lambda: geom.io.read_array(path))
    if shape is None:
        assert error is not None and "obj:" in str(error) and str(path) in str(error)
    else:
        assert error is None and array.shape == shape  # a 0-d file stays 0-d, as np.load gives it
    mu, error = _outcome(lambda: geom.measure(path))
    assert (error is None) == as_points, error
    assert error is None or (str(path) in str(error) and str(error).startswith("obj:")), error
    if as_points:
        assert _finite(mu)


# ----------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def clouds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clouds")
    rng = np.random.default_rng(0)
    np.save(folder / "a.npy", rng.random((20, 3)))
    np.save(folder / "b.npy", rng.random((15, 3)))
    return folder


CLI = {  # arguments (A, B: the two clouds; OUT: an output folder) -> what the one-line error names
    "compare qmc beyond memory": (["compare", "A", "B", "--scheme", "qmc", "--n-projections", "100000"], "n_projections"),
    "compare aswd hidden": (["compare", "A", "B", "--scheme", "aswd", "--option", "hidden=1000000000000"], "hidden"),
    "compare aswd lifted_dim": (["compare", "A", "B", "--scheme", "aswd", "--option", "lifted_dim=1000000000000"], "lifted_dim"),
    "compare dsw n_samples": (["compare", "A", "B", "--scheme", "dsw", "--option", "n_samples=1000000000000"], "n_samples"),
    "compare cv gamma": (["compare", "A", "B", "--scheme", "cv", "--option", "gamma=NaN"], "gamma"),
    "compare p": (["compare", "A", "B", "--p", "nan"], "--p"),
    "compare seed": (["compare", "A", "B", "--seed", str(2**64)], "--seed"),
    "compare n-projections": (["compare", "A", "B", "--n-projections", str(HUGE)], "--n-projections"),
    "compare kind": (["compare", "A", "B", "--kind", "spd"], "A"),
    "compare metrics": (["compare", "A", "B", "--metrics", "nope"], "--metrics"),
    "compare option": (["compare", "A", "B", "--option", "noequals"], "--option"),
    "compare missing B": (["compare", "A", "no such file.npy"], "B"),
    "flow steps": (["flow", "A", "B", "--method", "sw", "--steps", "0", "--out", "OUT"], "--steps"),
    "flow record-every": (["flow", "A", "B", "--method", "sw", "--steps", str(HUGE), "--record-every", "1", "--out", "OUT"],
                          "--record-every"),
    "flow scheme": (["flow", "A", "B", "--method", "sw", "--scheme", "nope", "--out", "OUT"], "--scheme"),
    "flow source dataset": (["flow", "dataset:nope:0", "B", "--method", "sw", "--out", "OUT"], "SOURCE"),
    "generate dataset": (["generate", "--method", "swf", "--dataset", "nope", "--out", "OUT"], "--dataset"),
    "generate n-samples": (["generate", "--method", "swf", "--dataset", "gaussians", "--n-samples", str(HUGE), "--out", "OUT"],
                           "--n-samples"),
    "datasets usage": (["datasets", "--bogus"], "--bogus"),
    "plugins usage": (["plugins", "extra"], "extra"),
}


@pytest.mark.parametrize("name", list(CLI))
def test_cli_bad_arguments_end_in_one_line_and_status_2(bounded, capsys, clouds, tmp_path, name):
    argv, needle = CLI[name]
    paths = {"A": clouds / "a.npy", "B": clouds / "b.npy", "OUT": tmp_path / "out"}
    assert_user_error(*run(capsys, *[paths.get(a, a) for a in argv]), needle)
