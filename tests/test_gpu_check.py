"""tools/gpu_check.py runs every row CPU against CPU where there is no GPU (and they agree exactly)."""

import json

from geom_tools import gpu_check


def test_gpu_check_runs_on_the_cpu(tmp_path, capsys):
    path = tmp_path / "gpu.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert len(rows) >= 10 and all(r["ok"] and r["value_rel_err"] == 0.0 for r in rows)
    assert "| SW_300 uniform f32 (large p) |" in capsys.readouterr().out
