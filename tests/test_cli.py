"""The ``hyfa`` command line on a tiny simulated MuData: train, impute (whole and in chunks), merge, evaluate."""

import json
import subprocess
import sys

import mudata
import numpy as np
import pandas as pd
import pytest
from hyfa_testing import TINY

import hyfa
from hyfa import _cli, _demo

MODEL_PARAMS = [f"--model-param={key}={value}" for key, value in TINY.items()]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A MuData file with a donor split column, and a model trained on it by ``hyfa train``."""
    root = tmp_path_factory.mktemp("cli")
    mdata, _ = hyfa.data.simulate(n_donors=60, n_tissues=4, n_genes=6, missing_rate=0.4, seed=1)
    split = np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10)
    mdata.obs["split"] = pd.Categorical(split)
    mdata.write_h5mu(root / "data.h5mu")
    args = [
        "train",
        str(root / "data.h5mu"),
        str(root / "model"),
        "--split-key",
        "split",
        "--max-epochs",
        "2",
    ]
    args += [
        "--batch-size",
        "16",
        "--accelerator",
        "cpu",
        "--devices",
        "1",
        "--seed",
        "3",
        "--no-progress-bar",
    ]
    assert _cli.main(args + MODEL_PARAMS) == 0
    return root


def test_train_writes_a_loadable_model_and_a_record(workdir, capsys):
    record = json.loads((workdir / "model" / _cli.CLI_RECORD).read_text())
    assert record["model"]["n_metagenes"] == TINY["n_metagenes"] and record["seed"] == 3
    assert record["n_train_donors"] == 40 and record["n_validation_donors"] == 10
    model = hyfa.HYFA.load(str(workdir / "model"), mudata.read_h5mu(workdir / "data.h5mu"))
    assert model.is_trained and model.init_params_["non_kwargs"]["n_metagenes"] == TINY["n_metagenes"]
    assert sorted(model.adata.obs_names[model.test_indices]) == sorted(f"donor_{i}" for i in range(50, 60))


def test_train_refuses_existing_output_and_missing_input(workdir, capsys):
    with pytest.raises(SystemExit) as exit_:
        _cli.main(["train", str(workdir / "data.h5mu"), str(workdir / "model")])
    assert exit_.value.code == 2 and "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        _cli.main(["train", str(workdir / "nope.h5mu"), str(workdir / "other")])
    assert exit_.value.code == 2 and "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        _cli.main(["train", str(workdir / "data.h5mu"), str(workdir / "other"), "--model-param", "oops"])
    assert exit_.value.code == 2 and "NAME=VALUE" in capsys.readouterr().err
    # hyfa itself refuses the arguments: status 1, one line, no traceback
    status = _cli.main(["train", str(workdir / "data.h5mu"), str(workdir / "other"), "--tissues", "liver"])
    assert status == 1 and "hyfa train: error:" in capsys.readouterr().err
    assert not (workdir / "other" / "model.pt").exists()


def test_impute_in_chunks_then_merge_equals_one_job(workdir):
    data, model = str(workdir / "data.h5mu"), str(workdir / "model")
    whole = workdir / "whole.h5mu"
    assert _cli.main(["impute", model, data, str(whole), "--missing-only", "--no-progress-bar"]) == 0
    parts = []
    for i in (1, 2, 3):
        parts.append(str(workdir / f"part{i}.h5mu"))
        assert _cli.main(["impute", model, data, parts[-1], "--missing-only", "--chunk", f"{i}/3"]) == 0
    merged = workdir / "merged.h5mu"
    assert _cli.main(["merge", str(merged), *parts]) == 0
    a, b = mudata.read_h5mu(whole), mudata.read_h5mu(merged)
    assert sorted(a.mod) == sorted(b.mod)
    observed = mudata.read_h5mu(data)
    for tissue in a.mod:
        x, y = a[tissue], b[tissue]
        assert sorted(x.obs_names) == sorted(y.obs_names)
        # missing only: exactly the donors the tissue lacks
        assert not set(x.obs_names) & set(observed[tissue].obs_names)
        np.testing.assert_allclose(x[y.obs_names].X, y.X, rtol=1e-5, atol=1e-6)


def test_impute_targets_sources_and_donors_file(workdir):
    donors = workdir / "donors.txt"
    donors.write_text("# evaluation donors\ndonor_50\ndonor_51\n\n")
    out = workdir / "lung.h5mu"
    args = [
        "impute",
        str(workdir / "model"),
        str(workdir / "data.h5mu"),
        str(out),
        "--donors-file",
        str(donors),
    ]
    assert _cli.main(args + ["--targets", "tissue_1", "tissue_2", "--sources", "tissue_0", "tissue_3"]) == 0
    result = mudata.read_h5mu(out)
    assert sorted(result.mod) == ["tissue_1", "tissue_2"]
    assert set(result["tissue_1"].obs_names) <= {"donor_50", "donor_51"}


def test_impute_errors(workdir, capsys):
    data = str(workdir / "data.h5mu")
    with pytest.raises(SystemExit) as exit_:
        _cli.main(["impute", str(workdir / "no_model"), data, str(workdir / "x.h5mu")])
    assert exit_.value.code == 2 and "model.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        _cli.main(["impute", str(workdir / "model"), data, str(workdir / "x.h5mu"), "--chunk", "4/3"])
    assert exit_.value.code == 2 and "--chunk" in capsys.readouterr().err
    status = _cli.main(
        ["impute", str(workdir / "model"), data, str(workdir / "x.h5mu"), "--targets", "liver"]
    )
    assert status == 1 and "liver" in capsys.readouterr().err


def test_donor_chunks_partition_the_donors():
    donors = [f"d{i}" for i in range(10)]
    for n in (1, 3, 4, 10, 12):
        chunks = [_cli.donor_chunk(donors, i, n) for i in range(1, n + 1)]
        assert sum(chunks, []) == donors
        assert max(map(len, chunks)) - min(map(len, chunks)) <= 1


def test_evaluate_writes_tables_and_figure(workdir, capsys):
    prefix = workdir / "eval"
    args = [
        "evaluate",
        str(workdir / "model"),
        str(workdir / "data.h5mu"),
        str(prefix),
        "--sources",
        "tissue_0",
    ]
    assert _cli.main(args + ["--min-donors", "3"]) == 0
    results = pd.read_csv(workdir / "eval.csv")
    assert {"HYFA", "mean", "kNN", "TEEBoT"} <= set(results["method"])
    assert set(results["metric"]) == {"per-sample", "per-gene"}
    summary = pd.read_csv(workdir / "eval_summary.csv")
    assert "mean" in summary.columns
    assert (workdir / "eval.png").stat().st_size > 1000
    assert "HYFA, sources" in capsys.readouterr().out


def test_help_documents_every_option():
    parser = _cli.build_parser()
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        text = sub.format_help()
        for action in sub._actions:
            if action.option_strings:
                assert action.help, (name, action.option_strings)
                assert action.option_strings[-1] in text
        assert "exit status" in text
    result = subprocess.run(
        [sys.executable, "-m", "hyfa._cli", "impute", "--help"], capture_output=True, text=True, check=True
    )
    assert "--missing-only" in result.stdout and "hyfa merge" in result.stdout


def _fake_demo_table():
    methods = ["HYFA (blood)", "HYFA (all)", "mean", "blood surrogate"]
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {f"{m} {metric} r": rng.uniform(0.1, 0.9, 2) for m in methods for metric in _demo.METRICS},
        index=pd.Index(["Lung", "Liver"], name="tissue"),
    )
    table["mean per-gene r"] = np.nan
    table.insert(0, "n_donors", [30, 40])
    return table


def test_demo_prints_table_and_writes_csv(monkeypatch, tmp_path, capsys):
    """The ``hyfa demo`` command around ``run_demo`` (which tests/test_gtex_end_to_end.py runs for real)."""
    table = _fake_demo_table()
    calls = {}

    def fake_run_demo(**kwargs):
        calls.update(kwargs)
        return table, {"train": 1.0}, None

    monkeypatch.setattr(_demo, "run_demo", fake_run_demo)
    csv = tmp_path / "demo.csv"
    assert _cli.main(["demo", "--max-epochs", "3", "--seed", "2", "--output", str(csv)]) == 0
    assert calls == {"preset": "quick", "max_epochs": 3, "seed": 2}
    out = capsys.readouterr().out
    assert "Lung" in out and "per-sample r: HYFA (all) > blood surrogate in" in out and "time:" in out
    pd.testing.assert_frame_equal(pd.read_csv(csv, index_col=0), table, check_dtype=False)


def test_presets_are_public_and_read_only():
    quick = hyfa.preset("quick")
    assert hyfa.PRESETS["quick"] is quick and set(hyfa.PRESETS) == {"quick", "paper"}
    # the batch size is the training default (63 from 315 training donors, fewer below)
    assert quick.model["n_metagenes"] == 10 and quick.train == {"max_epochs": 200, "lr": 2e-3}
    quick.model["n_metagenes"] = 99  # a copy: the preset is unchanged
    assert hyfa.preset("quick").model["n_metagenes"] == 10
    assert quick["model"] == quick.model  # the dictionary form of hyfa 0.1
    assert _demo.PRESETS is hyfa.PRESETS
    with pytest.raises(TypeError):
        hyfa.PRESETS["mine"] = quick
    with pytest.raises(ValueError, match="quick"):
        hyfa.preset("fast")
    # every key is an argument of HYFA / HYFA.train
    import inspect

    for p in hyfa.PRESETS.values():
        assert set(p.model) <= set(inspect.signature(hyfa.HYFA.__init__).parameters)
        assert set(p.train) <= set(inspect.signature(hyfa.HYFA.train).parameters)


def test_training_is_quiet(capfd, recwarn, caplog):
    """No litlogger tip, LeafSpec deprecation, eval-mode or logging-interval message; no mudata FutureWarning."""
    mdata, _ = hyfa.data.simulate(n_donors=30, n_tissues=3, n_genes=5, missing_rate=0.3, seed=0)
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    model.train(max_epochs=1, batch_size=8, accelerator="cpu", enable_progress_bar=False)
    model.get_imputed_expression()
    captured = capfd.readouterr()
    text = captured.out + captured.err + "\n".join(str(w.message) for w in recwarn)
    for noise in ("litlogger", "LeafSpec", "in eval mode", "logging interval", "pull_on_update"):
        assert noise not in text + caplog.text
