"""End to end on the bundled real GTEx data: exactly what ``hyfa demo`` runs (the ``quick`` preset).

The ``hyfa demo`` command around it is tested without training in tests/test_cli.py.
"""

import numpy as np
import pytest

from hyfa import _demo


@pytest.fixture(scope="module")
def demo_run():
    return _demo.run_demo()


def test_demo_beats_mean_and_blood_surrogate_on_test_donors(demo_run):
    table, timings, model = demo_run
    mdata = model.adata
    split = mdata.obs["split"].astype(str).to_numpy()
    assert set(split[model.train_indices_]) == {"train"}
    assert set(split[model.validation_indices_]) == {"val"}
    assert len(model.train_indices_) == 500 and len(model.genes) == 55 and len(model.tissues) == 49
    assert len(table) == 41  # tissues with >= 25 test donors having whole blood (the paper's protocol)
    assert table["n_donors"].min() >= 25
    scores = table.drop(columns="n_donors").mean()
    print(scores)
    for metric in ["per-sample r", "per-gene r"]:
        assert scores[f"HYFA (blood) {metric}"] > scores[f"blood surrogate {metric}"] + 0.03
        assert scores[f"HYFA (all) {metric}"] > scores[f"blood surrogate {metric}"] + 0.1
        # using all of a donor's tissues beats blood alone on most tissues
        assert (table[f"HYFA (all) {metric}"] > table[f"HYFA (blood) {metric}"]).mean() > 0.8
    assert scores["HYFA (blood) per-sample r"] > scores["mean per-sample r"] + 0.1
    assert table["mean per-gene r"].isna().all()  # a constant prediction has no per-gene correlation
    assert np.isfinite(table["HYFA (blood) per-gene r"]).all()
