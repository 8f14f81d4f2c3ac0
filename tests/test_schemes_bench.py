"""The scheme benchmark tool: its reference rule against closed forms, its target verdicts, and one
small end-to-end run that writes every table and plot."""

import json
import math

import pytest
import torch

from geom_tools import schemes_bench as sb


def test_fibonacci_reference_rule_integrates_the_sphere():
    theta = sb.fibonacci_directions(1 << 17)
    assert torch.allclose(theta.norm(dim=1), torch.ones(1 << 17, dtype=torch.float64), atol=1e-12)
    # uniform law on S^2: E theta = 0 and E theta theta^T = I / 3
    assert theta.mean(0).abs().max().item() < 1e-8
    assert (theta.T @ theta / theta.shape[0] - torch.eye(3, dtype=torch.float64) / 3).abs().max().item() < 1e-7


def test_reference_of_a_translate_is_its_closed_form():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shift = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    value, gap = sb.reference(x, x + shift, n=1 << 12)
    assert value == pytest.approx((shift**2).sum().item() / 3, rel=1e-5)  # E (theta . t)^2 = |t|^2 / 3
    assert gap < 1e-5


def _errors(ratio_rqsw):
    rows = []
    for pair in ("a / b", "c / d"):
        for scheme, rmse in (("mc", 1.0), ("rqsw coulomb", ratio_rqsw), ("rqsw spiral", 0.01)):
            rows.append(dict(pair=pair, scheme=scheme, L=100, rmse=rmse, reference=1.0, relative_rmse=rmse))
    return rows


def _variance(reduction, calibration):
    def entry(r, c):
        return dict(reduction=r, stderr_over_spread=c, variance=1.0, stderr_rms=c, spread=1.0)

    return [dict(pair="a / shifted b", centred=False, L=100, seeds=10,
                 schemes={"mc": entry(1.0, calibration), "cv": entry(reduction, 1.0)}),
            dict(pair="a / shifted b", centred=True, L=100, seeds=10,
                 schemes={"mc": entry(1.0, 1.0), "cv": entry(1.0, 1.0)})]


@pytest.mark.parametrize("rqsw, reduction, calibration, over, missed", [
    (0.03, 10.0, 1.1, 1.05, 0),
    (0.07, 10.0, 1.1, 1.05, 1),   # RQSW not accurate enough
    (0.03, 3.0, 1.1, 1.05, 1),    # control variates too weak
    (0.03, 10.0, 1.4, 1.05, 1),   # stderr off by 40%
    (0.03, 10.0, 1.1, 1.20, 2),   # qmc and cv 20% slower than mc
])
def test_targets_say_met_or_missed_from_the_numbers(rqsw, reduction, calibration, over, missed):
    times = [dict(scheme=s, over_mc=over) for s in ("rqsw coulomb", "cv")]
    lines = sb.targets(_errors(rqsw), _variance(reduction, calibration), times, 100)
    assert sum("**missed**" in line for line in lines) == missed, lines
    assert sum(": met)" in line for line in lines) == len(lines) - missed


def test_a_small_run_writes_every_table_and_plot(tmp_path):
    configs = ([("mc", "mc", {}), ("rqsw coulomb", "qmc", {}), ("cv", "cv", {}), ("reservoir", "reservoir", {})],
               [("qsw coulomb", "qmc", {"randomize": False})],
               [("max", "max", {"n_steps": 3})])
    table = sb.run(tmp_path / "out", n_points=64, Ls=[4, 8], seeds=2, variance_seeds=3, reference_n=1 << 10,
                   timing_n=500, flow=dict(n=64, steps=2, L=4, lr=0.5, every=1), meshes=tmp_path / "none",
                   configs=configs)
    for name in ("schemes.md", "schemes.json", "schemes-error.png", "schemes-flows.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    doc = json.loads((tmp_path / "out" / "schemes.json").read_text())
    assert {r["scheme"] for r in doc["errors"]} == {"mc", "rqsw coulomb", "cv", "reservoir", "qsw coulomb"}
    assert {r["pair"] for r in doc["errors"]} == {p for p, _, _ in sb.shape_pairs(8, meshes=tmp_path / "none")}
    assert all(math.isfinite(r["rmse"]) and r["L"] in (4, 8) for r in doc["errors"])
    assert set(doc["variance"][0]["schemes"]) == {"mc", "cv"}  # those of VARIANCE among the configurations
    assert set(doc["flows"]) == {"mc", "rqsw coulomb", "cv", "reservoir", "max"}  # those of FLOWS
    assert [r["scheme"] for r in doc["times"]] == ["mc", "rqsw coulomb", "cv", "reservoir", "qsw coulomb", "max"]
    assert table == (tmp_path / "out" / "schemes.md").read_text() and "Targets" in table
