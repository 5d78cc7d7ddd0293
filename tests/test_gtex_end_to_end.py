"""End to end on the bundled real GTEx data: the ``hyfa demo`` pipeline with fewer epochs."""

import numpy as np
import pandas as pd
import pytest

from hyfa import _cli, _demo


@pytest.fixture(scope="module")
def demo_run():
    return _demo.run_demo(max_epochs=30)


def test_demo_beats_mean_and_blood_surrogate_on_test_donors(demo_run):
    table, timings, model = demo_run
    mdata = model.adata
    split = mdata.obs["split"].astype(str).to_numpy()
    assert set(split[model.train_indices_]) == {"train"}
    assert set(split[model.validation_indices_]) == {"val"}
    assert len(model.train_indices_) == 500 and len(model.genes) == 55 and len(model.tissues) == 49
    assert len(table) == 41  # tissues with >= 25 test donors having whole blood (the paper's protocol)
    assert table["n_donors"].min() >= 25
    ps = table.filter(like="per-sample r").mean()
    print(ps)
    for hyfa_col in ["HYFA (blood) per-sample r", "HYFA (all) per-sample r"]:
        assert ps[hyfa_col] > ps["mean per-sample r"] + 0.05
        assert ps[hyfa_col] > ps["blood surrogate per-sample r"] + 0.02
    # using all of a donor's tissues beats blood alone on most tissues
    assert (table["HYFA (all) per-sample r"] > table["HYFA (blood) per-sample r"]).mean() > 0.6
    assert np.isfinite(table["HYFA (blood) per-gene r"]).all()


def test_cli_prints_table_and_writes_csv(demo_run, monkeypatch, tmp_path, capsys):
    table, timings, model = demo_run
    calls = {}

    def fake_run_demo(**kwargs):
        calls.update(kwargs)
        return demo_run

    monkeypatch.setattr(_demo, "run_demo", fake_run_demo)
    csv = tmp_path / "demo.csv"
    assert _cli.main(["demo", "--max-epochs", "3", "--seed", "2", "--output", str(csv)]) == 0
    assert calls == {"preset": "quick", "max_epochs": 3, "seed": 2}
    out = capsys.readouterr().out
    assert "Lung" in out and "per-sample r: HYFA (all) > blood surrogate in" in out and "time:" in out
    pd.testing.assert_frame_equal(pd.read_csv(csv, index_col=0), table, check_dtype=False)
