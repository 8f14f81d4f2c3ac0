"""The flow benchmark tool: its exact W_2 against a closed form, its target verdicts, and one small
end-to-end run that writes the table, the JSON and the plot."""

import json
import math

import pytest
import torch

from geom_tools import flows_bench as fb


def test_exact_w2_of_a_translate_is_the_shift_length():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shift = torch.tensor([0.03, -0.02, 0.05], dtype=torch.float64)  # small: the identity matching is optimal
    assert fb.exact_w2(x, x + shift) == pytest.approx(shift.norm().item(), rel=1e-9)
    assert fb.exact_w2(x, x.flip(0)) < 1e-7  # order does not matter (sqrt of a rounding-level cost)


def _row(ratio, w2_end, pair="a -> b"):
    return dict(pair=pair, method="sw", scheme="mc", steps=[0, 10], sw=[1.0, ratio], w2=[(0, 1.0), (10, w2_end)],
                seconds=1.0, ratio=ratio, first_below=10 if ratio < fb.TARGET else None)


@pytest.mark.parametrize("ratios, w2_ends, missed", [
    ([0.05, 0.02], [0.3, 0.1], 0),
    ([0.05, 0.2], [0.3, 0.1], 1),   # one flow stays above 10% of its start
    ([0.05, 0.02], [0.3, 1.2], 1),  # the exact distance rose in one run
    ([0.5, 0.02], [0.3, 1.2], 2),
])
def test_targets_say_met_or_missed_from_the_numbers(ratios, w2_ends, missed):
    result = dict(rows=[_row(r, w) for r, w in zip(ratios, w2_ends)], settings=dict(steps=10))
    lines = fb.targets(result)
    assert sum("**missed**" in line for line in lines) == missed, lines


def test_small_run_scores_every_flow_with_the_same_yardsticks(tmp_path):
    runs = [("sw", "mc", "mc", {}), ("swf", "rqsw", "qmc", {}), ("mmd", "mc", "mc", {})]
    result = fb.run(n=64, steps=10, L=16, every=5, seed=3, pairs=[("sphere", "torus")], runs=runs)
    x, y = fb.load_pair("sphere", "torus", 64, 3)
    rows = result["rows"]
    assert [(r["method"], r["scheme"]) for r in rows] == [("sw", "mc"), ("swf", "rqsw"), ("mmd", "mc")]
    for r in rows:
        assert r["steps"] == [0, 5, 10]
        assert r["sw"][0] == pytest.approx(rows[0]["sw"][0], rel=1e-12)  # the same start for every flow
        assert r["w2"][0] == (0, pytest.approx(fb.exact_w2(x, y), rel=1e-12))
        assert r["ratio"] == pytest.approx(r["sw"][-1] / r["sw"][0])
        assert r["sw"][-1] < r["sw"][0]
    # the yardstick is SW_2 itself: its square is the mean over slices of the sorted-pairs cost
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(1024, 3, generator=g, dtype=torch.float64)
    theta /= theta.norm(dim=1, keepdim=True)
    u, v = (x @ theta.T).sort(0).values, (y @ theta.T).sort(0).values
    assert rows[0]["sw"][0] == pytest.approx(math.sqrt(((u - v) ** 2).mean().item()), rel=1e-9)

    out = tmp_path / "out"
    assert fb.main(["--quick", "--steps", "10", "--n", "32", "--out", str(out)]) == 0  # explicit sizes win
    saved = json.loads((out / "flows.json").read_text())
    assert len(saved["rows"]) == len(fb.PAIRS) * len(fb.RUNS)
    assert "| pair | method | scheme |" in (out / "flows.md").read_text()
    assert (out / "flows.png").stat().st_size > 0
