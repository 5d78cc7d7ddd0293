"""Validation calibration: its least squares, its place in every prediction path, its errors, what it gains."""

import logging

import mudata as md
import numpy as np
import pytest
import scvi
import torch
from hyfa_testing import TINY

import hyfa
from hyfa.model._calibration import _Sums, fit_weights, one_se_weights
from hyfa.module import HYFAModule, fixed_split
from hyfa.nn import TargetCalibration


def _loss(sums, a, b):
    return (
        -2 * a * sums["yd"]
        - 2 * b * sums["ys"]
        + a * a * sums["dd"]
        + 2 * a * b * sums["ds"]
        + b * b * sums["ss"]
    )


@pytest.mark.parametrize("seed", range(8))
def test_fitted_weights_are_the_constrained_least_squares_minimum(seed):
    rng = np.random.default_rng(seed)
    n = 40
    d, s = rng.normal(size=n), rng.normal(size=n)
    true_a, true_b = rng.uniform(-0.8, 1.6), rng.uniform(-0.5, 2.0)  # some fall outside the box
    y = true_a * d + true_b * s + rng.normal(scale=0.3, size=n)
    sums = {"yd": y @ d, "ys": y @ s, "dd": d @ d, "ds": d @ s, "ss": s @ s}
    a, b = fit_weights(sums, has_skip=True)
    assert 0 <= a <= 1 and b >= 0
    grid_a, grid_b = np.meshgrid(np.linspace(0, 1, 201), np.linspace(0, 3, 601))
    best = _loss(sums, grid_a, grid_b).min()
    assert _loss(sums, a, b) <= best + 1e-9 * abs(best)
    if 0 < true_a < 1 and true_b > 0.2:  # inside the box: close to the truth
        assert abs(a - true_a) < 0.25 and abs(b - true_b) < 0.25


def test_without_a_skip_only_the_decoder_weight_is_fitted():
    sums = {"yd": 3.0, "ys": 0.0, "dd": 10.0, "ds": 0.0, "ss": 0.0}
    assert fit_weights(sums, has_skip=False) == (pytest.approx(0.3), 1.0)
    assert fit_weights({**sums, "yd": -1.0}, has_skip=False)[0] == 0.0


def test_fold_sums_are_the_centered_cross_products_split_by_donor_fold():
    rng = np.random.default_rng(0)
    y, d, s = (rng.normal(loc=m, size=(30, 7)) for m in (1.0, -2.0, 0.5))
    folds = rng.integers(0, 4, size=30)
    sums = _Sums(7, n_folds=4)
    for chunk in np.array_split(np.arange(30), 3):  # rows arrive in minibatches
        sums.add(y[chunk], d[chunk], s[chunk], folds=folds[chunk])
    centered = {k: v - v.mean(axis=0) for k, v in {"y": y, "d": d, "s": s}.items()}
    by_fold = sums.fold_centered()
    for k in ("yd", "ys", "dd", "ds", "ss"):
        products = (centered[k[0]] * centered[k[1]]).sum(axis=1)
        assert by_fold[k].sum() == pytest.approx(products.sum())
        np.testing.assert_allclose(by_fold[k], [products[folds == f].sum() for f in range(4)], atol=1e-9)


def _donor_sums(y, d, s, n_folds):
    sums = _Sums(y.shape[1], n_folds)
    sums.add(y, d, s, folds=np.arange(len(y)) % n_folds)
    folds = sums.fold_centered()
    return {k: v.sum() for k, v in folds.items()}, folds


def test_one_se_rule_drops_a_decoder_that_helps_no_more_than_chance():
    """9 validation donors, 50 genes: a decoder unrelated to y gets a least-squares share by chance only."""
    kept, chance = 0, 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        s, d = rng.normal(size=(9, 50)), rng.normal(size=(9, 50))
        y = 0.8 * s + rng.normal(size=(9, 50))
        total, folds = _donor_sums(y, d, s, 9)
        ls = fit_weights(total, has_skip=True)
        a, b = one_se_weights(folds, has_skip=True)
        chance += ls[0] > 0.02
        kept += a > 0
        assert a <= ls[0] and b == pytest.approx(max(total["ys"] - a * total["ds"], 0) / total["ss"])
        assert one_se_weights(folds, has_skip=True, tolerance_se=0) == ls
    assert chance >= 5 and kept <= 2, (chance, kept)


def test_one_se_rule_keeps_a_decoder_that_clearly_helps():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        s, d = rng.normal(size=(9, 50)), rng.normal(size=(9, 50))
        y = 0.7 * d + 0.5 * s + 0.5 * rng.normal(size=(9, 50))
        total, folds = _donor_sums(y, d, s, 9)
        ls = fit_weights(total, has_skip=True)
        a, _ = one_se_weights(folds, has_skip=True)
        assert ls[0] > 0.6 and a > ls[0] - 0.1, (ls, a)
        # and without a skip, or with too few folds, the least-squares weights stand
        assert one_se_weights(folds, has_skip=False) == fit_weights(total, has_skip=False)
        two = _donor_sums(y, d, s, 2)
        assert one_se_weights(two[1], has_skip=True) == fit_weights(two[0], has_skip=True)


def test_calibrated_mean_is_center_plus_shrunken_decoder_plus_scaled_skip():
    part = TargetCalibration(n_tissues=3)
    assert part.is_identity
    part.set(torch.tensor([0.5, 1.0, 0.0]), torch.tensor([2.0, 1.0, 0.5]))
    assert not part.is_identity
    decoder, center, offset = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5)
    tissue = torch.tensor([0, 2, 1, 0])
    got = part(decoder, center, offset, tissue)
    alpha, beta = np.array([0.5, 1.0, 0.0])[tissue], np.array([2.0, 1.0, 0.5])[tissue]
    c = center.numpy()
    expected = c + alpha[:, None] * (decoder.numpy() - c) + beta[:, None] * offset.numpy()
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)
    part.reset()
    assert part.is_identity


def test_a_state_dict_without_calibration_loads_uncalibrated():
    kwargs = dict(n_genes=6, n_tissues=3, **TINY)
    module = HYFAModule(**kwargs)
    module.calibration.set(torch.full((3,), 0.5), torch.full((3,), 2.0))
    old = {k: v for k, v in HYFAModule(**kwargs).state_dict().items() if not k.startswith("calibration.")}
    module.load_state_dict(old)
    assert module.calibration.is_identity


def _parts(model, mdata, donors):
    """Per tissue: (observed, decoder part, skip part) of ``donors`` with the calibration switched off."""
    saved = {k: v.clone() for k, v in model.module.calibration.state_dict().items()}
    weight = model.module.skip.weight.detach().clone()
    model.module.calibration.reset()
    try:
        full = model.get_imputed_expression(mdata, donors=donors)
        with torch.no_grad():
            model.module.skip.weight.zero_()
        decoder = model.get_imputed_expression(mdata, donors=donors)
    finally:
        with torch.no_grad():
            model.module.skip.weight.copy_(weight)
        model.module.calibration.load_state_dict(saved)
    out = {}
    for t in model.tissues:
        names = [d for d in full[t].obs_names if d in set(mdata.mod[t].obs_names)]
        observed = mdata.mod[t][names, model.genes].layers["normalized"]
        d = decoder[t][names].X.astype(np.float64)
        out[t] = (np.asarray(observed, np.float64), d, full[t][names].X.astype(np.float64) - d)
    return out


BRAIN = ("Brain_Caudate_basal_ganglia", "Brain_Nucleus_accumbens_basal_ganglia")


@pytest.fixture(scope="module")
def calibrated():
    """HYFA on two GTEx brain regions: 70 training donors, 30 validation donors, the rest held out.

    The small-cohort regime of #17: two closely related tissues, whose own gene values carry much
    of the signal, and a decoder that fits its 70 training donors far better than new ones.
    """
    gtex = hyfa.data.gtex_acmg59()
    hyfa.pp.normalize_gtex(gtex)
    donors = gtex[BRAIN[0]].obs_names.intersection(gtex[BRAIN[1]].obs_names)
    donors = list(np.random.default_rng(0).permutation(donors))
    mdata = md.MuData({t: gtex[t][donors].copy() for t in BRAIN})
    train, val, test = donors[:70], donors[70:100], donors[100:]
    hyfa.HYFA.setup_mudata(mdata, layer="normalized", gene_mask_key="common")
    scvi.settings.seed = 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is as fast, and immune to busy shared cores
    try:
        model = hyfa.HYFA(mdata, **hyfa.preset("quick").model)
        model.train(
            max_epochs=150, train_donors=train, validation_donors=val, lr=2e-3, enable_progress_bar=False
        )
    finally:
        torch.set_num_threads(threads)
    assert model.n_ensemble == 6  # cross-fitted: the 5 copies kept; the ensemble is tests/test_ensemble.py's
    model.fold_models_ = None  # the calibration of the trained model alone
    return model, mdata, val, test


def _validation_path_sums(model, mdata, donors):
    """Per tissue: the centered sums of the validation loss's own source / target split, by the training path."""
    from hyfa._constants import REGISTRY_KEYS

    module = model.module.eval()
    rows = mdata.obs_names.get_indexer(donors)
    tensors = next(iter(model._make_data_loader(mdata, indices=rows, batch_size=len(rows))))
    with torch.no_grad():
        inference = module.inference(**module._get_inference_input(tensors))
        generative_input = module._get_generative_input(tensors, inference)
        mean = module.generative(**generative_input)["px"].mean.double().numpy()
    offset = generative_input["gene_offset"].double().numpy()
    tissue = generative_input["tissue_index"].numpy()
    donor_row, _ = inference["target_mask"].nonzero(as_tuple=True)
    observed = module.samples(tensors[REGISTRY_KEYS.X_KEY], donor_row, generative_input["tissue_index"])
    observed = observed.double().numpy()
    fold = donor_row.numpy() % min(len(donors), 10)  # calibrate's donor folds, in the order of ``donors``
    out = {}
    for i, t in enumerate(model.tissues):
        y, d, s = observed[tissue == i], mean[tissue == i] - offset[tissue == i], offset[tissue == i]
        yc, dc, sc = (v - v.mean(axis=0) for v in (y, d, s))
        products = {
            "yd": (yc * dc).sum(axis=1),
            "ys": (yc * sc).sum(axis=1),
            "dd": (dc * dc).sum(axis=1),
            "ds": (dc * sc).sum(axis=1),
            "ss": (sc * sc).sum(axis=1),
        }
        f = fold[tissue == i]
        out[t] = (
            {k: v.sum() for k, v in products.items()},
            {k: np.bincount(f, weights=v, minlength=f.max() + 1) for k, v in products.items()},
        )
    return out


def test_calibration_is_the_least_squares_fit_on_the_validation_split(calibrated):
    model, mdata, val, _ = calibrated
    saved = {k: v.clone() for k, v in model.module.calibration.state_dict().items()}
    try:
        assert not model.module.calibration.is_identity  # train() calibrated
        # the validation split only, and the least-squares weights (no one-standard-error rule)
        table = model.calibrate(n_source_draws=1, min_donors=2, tolerance_se=0)
        model.module.calibration.reset()
        rule = model.calibrate(n_source_draws=1, min_donors=2)  # the one-standard-error rule
        model.module.calibration.reset()
        reference = _validation_path_sums(model, mdata, val)
        for t, (sums, folds) in reference.items():
            a, b = table.loc[t, "decoder_weight"], table.loc[t, "skip_weight"]
            np.testing.assert_allclose((a, b), fit_weights(sums, has_skip=True), rtol=1e-3, atol=1e-4)
            assert _loss(sums, a, b) <= _loss(sums, 1.0, 1.0) + 1e-6  # never raises the validation error
            expected = one_se_weights(folds, has_skip=True)
            np.testing.assert_allclose(rule.loc[t, ["decoder_weight", "skip_weight"]], expected, atol=1e-3)
            assert rule.loc[t, "decoder_weight"] <= a + 1e-6
        assert (table["decoder_weight"] < 0.9).any(), table  # this small cohort's decoder is shrunk
    finally:
        model.module.calibration.load_state_dict(saved)


@pytest.mark.filterwarnings("ignore:Skipping")
def test_every_prediction_applies_the_calibration(calibrated, tmp_path):
    model, mdata, _, test = calibrated
    table = model.calibration
    parts = _parts(model, mdata, test)
    imputed = model.get_imputed_expression(donors=test)
    loc = model.module.input_loc.numpy()
    for i, t in enumerate(model.tissues):
        names = [d for d in imputed[t].obs_names if d in set(mdata.mod[t].obs_names)]
        _, d, s = parts[t]
        a, b = table.loc[t, "decoder_weight"], table.loc[t, "skip_weight"]
        expected = loc[i] + a * (d - loc[i]) + b * s
        np.testing.assert_allclose(imputed[t][names].X, expected, rtol=1e-4, atol=1e-4)
    model.save(tmp_path / "m")
    loaded = hyfa.HYFA.load(tmp_path / "m", adata=mdata)
    again = loaded.get_imputed_expression(donors=test)
    for t in model.tissues:
        np.testing.assert_allclose(again[t].X, imputed[t].X, rtol=1e-6, atol=1e-6)


def _per_gene_r(pred, obs):
    return float(np.mean([np.corrcoef(pred[:, g], obs[:, g])[0, 1] for g in range(obs.shape[1])]))


@pytest.mark.filterwarnings("ignore:Skipping")
def test_calibration_lowers_the_held_out_error(calibrated):
    """70 training donors: the decoder overfits them; calibrated predictions of new donors are closer."""
    model, mdata, _, test = calibrated
    parts = _parts(model, mdata, test)
    table = model.calibration
    lowered, gained = 0, 0
    for i, t in enumerate(model.tissues):
        y, d, s = parts[t]
        loc = model.module.input_loc.numpy()[i]
        a, b = table.loc[t, "decoder_weight"], table.loc[t, "skip_weight"]
        raw, cal = d + s, loc + a * (d - loc) + b * s
        raw_error, cal_error = np.mean((raw - y) ** 2), np.mean((cal - y) ** 2)
        assert cal_error <= raw_error * 1.01, t
        assert _per_gene_r(cal, y) >= _per_gene_r(raw, y) - 0.01, t  # and per-gene r does not drop
        lowered += cal_error < raw_error * 0.99
        gained += _per_gene_r(cal, y) > _per_gene_r(raw, y) + 0.02
    assert lowered >= 1 and gained >= 1, table  # measured: per-gene r +0.04 and +0.08


def test_calibration_errors_name_the_problem(calibrated, unpaired):
    model, mdata, val, _ = calibrated
    train = list(mdata.obs_names[:3])
    with pytest.raises(ValueError, match="must not use training donors: GTEX-"):
        model.calibrate(donors=train)
    with pytest.raises(ValueError, match="Unknown calibration donors"):
        model.calibrate(donors=["nobody"])
    with pytest.raises(ValueError, match="min_donors"):
        model.calibrate(min_donors=0)
    with pytest.raises(ValueError, match="n_source_draws"):
        model.calibrate(n_source_draws=0)
    for bad in (-1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="tolerance_se must be a finite number >= 0, got"):
            model.calibrate(tolerance_se=bad)
    with pytest.raises(RuntimeError, match="trained model"):
        hyfa.HYFA(mdata, **TINY).calibrate()
    counts_mdata, _ = hyfa.data.simulate(
        n_donors=30, n_tissues=2, n_genes=8, missing_rate=0.0, counts=True, seed=0
    )
    hyfa.HYFA.setup_mudata(counts_mdata)
    counts = hyfa.HYFA(counts_mdata, gene_likelihood="nb", **TINY)
    counts.train(max_epochs=1, enable_progress_bar=False)
    assert counts.module.calibration.is_identity
    with pytest.raises(ValueError, match="gene_likelihood='normal' only; this model's is 'nb'"):
        counts.calibrate()
    mdata2, _ = hyfa.data.simulate(n_donors=30, n_tissues=2, n_genes=8, missing_rate=0.0, seed=0)
    hyfa.HYFA.setup_mudata(mdata2)
    plain = hyfa.HYFA(mdata2, **TINY)
    plain.train(max_epochs=1, train_size=1.0, calibration_folds=0, enable_progress_bar=False)
    assert plain.module.calibration.is_identity  # calibrating on validation donors, and there are none
    with pytest.raises(ValueError, match="no validation donors"):
        plain.calibrate()
    plain.train(max_epochs=1, train_size=1.0, enable_progress_bar=False)  # cross-fitted: needs none
    assert plain.history["calibration"]["n_donors"].sum() > 0
    plain.train(max_epochs=1, calibrate=False, enable_progress_bar=False)
    assert plain.module.calibration.is_identity


@pytest.mark.parametrize(("n_train", "expected"), [(40, 16), (81, 16), (200, 40), (314, 62), (500, 63)])
def test_default_batch_size_gives_small_cohorts_five_steps_an_epoch(n_train, expected):
    from hyfa.model._donors import auto_batch_size

    assert auto_batch_size(n_train) == expected


def test_train_uses_the_default_batch_size_of_the_cohort():
    mdata, _ = hyfa.data.simulate(n_donors=90, n_tissues=2, n_genes=8, missing_rate=0.0, seed=0)
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    model.train(max_epochs=1, train_donors=list(mdata.obs_names[:80]), enable_progress_bar=False)
    assert model.trainer.global_step == 5  # 80 donors, 16 per batch (63 would be 2 steps)
    model.train(
        max_epochs=1, batch_size=63, train_donors=list(mdata.obs_names[:80]), enable_progress_bar=False
    )
    assert model.trainer.global_step == 2


def test_a_fit_that_would_predict_only_gene_means_is_refused(calibrated, monkeypatch, caplog):
    model, _, _, _ = calibrated
    saved = {k: v.clone() for k, v in model.module.calibration.state_dict().items()}
    monkeypatch.setattr("hyfa.model._calibration.fit_weights", lambda sums, has_skip: (0.0, 0.0))
    try:
        with caplog.at_level(logging.WARNING, logger="hyfa.model._calibration"):
            table = model.calibrate()
        assert (table["decoder_weight"] == 1).all() and (table["skip_weight"] == 1).all()
        assert model.module.calibration.is_identity
        assert f"Not calibrating {model.tissues[0]!r}" in caplog.text
    finally:
        model.module.calibration.load_state_dict(saved)


def test_cross_fitted_calibration_fits_each_fold_as_predicted_by_a_copy_trained_without_it(monkeypatch):
    """``calibrate(n_folds=3)``: the folds split the training donors; each copy never sees its fold; the
    weights are the least-squares fit (``tolerance_se=None``, cross-fitted) to the copies' predictions of
    their folds, recomputed here from ``get_imputed_expression`` with sums centered over all folds."""
    from hyfa.model._calibration import CalibrationMixin

    mdata, _ = hyfa.data.simulate(n_donors=40, n_tissues=2, n_genes=12, missing_rate=0.0, seed=3)
    hyfa.HYFA.setup_mudata(mdata)
    scvi.settings.seed = 0
    model = hyfa.HYFA(mdata, **TINY)
    train = list(mdata.obs_names[:30])
    model.train(max_epochs=3, train_donors=train, calibrate=False, enable_progress_bar=False)
    copies = []
    original = CalibrationMixin._calibration_sums

    def record(self, donors, *args, **kwargs):
        copies.append((self, list(donors), list(self.adata.obs_names[self.train_indices])))
        return original(self, donors, *args, **kwargs)

    monkeypatch.setattr(CalibrationMixin, "_calibration_sums", record)
    fitted = []

    def rule(folds, *args, **kwargs):
        fitted.append(folds)
        return one_se_weights(folds, *args, **kwargs)

    monkeypatch.setattr("hyfa.model._calibration.one_se_weights", rule)
    table = model.calibrate(n_folds=3, n_source_draws=1, min_donors=2, train_kwargs={"max_epochs": 3})
    assert len(copies) == 3
    folds = [set(fold) for _, fold, _ in copies]
    assert set().union(*folds) == set(train) and sum(map(len, folds)) == len(train)  # a partition
    for copy, fold, trained_on in copies:
        assert copy is not model and set(trained_on) == set(train) - set(fold)
    assert table["n_donors"].sum() == len(train)  # one draw: each donor a target in one of the two tissues
    # independent recomputation: each copy's uncalibrated predictions of its fold, from the public API
    # (with two tissues, one draw makes each donor a target in one of them, the other its source)
    y_d_s = {t: ([], [], [], []) for t in model.tissues}
    for k, (copy, fold, _) in enumerate(copies):
        rows = torch.as_tensor(mdata.obs_names.get_indexer(fold))
        _, target = fixed_split(
            torch.ones(len(fold), 2, dtype=torch.bool), rows, 0, exponent=model.module.source_count_exponent
        )
        full = copy.get_imputed_expression(mdata, donors=fold)
        with torch.no_grad():
            copy.module.skip.weight.zero_()
        decoder = copy.get_imputed_expression(mdata, donors=fold)
        for i, t in enumerate(model.tissues):
            names = [d for d, is_target in zip(fold, target[:, i].tolist(), strict=True) if is_target]
            y_d_s[t][0].append(np.asarray(mdata.mod[t][names, model.genes].X, np.float64))
            y_d_s[t][1].append(decoder[t][names].X.astype(np.float64))
            y_d_s[t][2].append(full[t][names].X.astype(np.float64) - y_d_s[t][1][-1])
            y_d_s[t][3].append(np.full(len(names), k))
    for t in model.tissues:
        y, d, s = (np.vstack(v) for v in y_d_s[t][:3])
        yc, dc, sc = (v - v.mean(axis=0) for v in (y, d, s))
        fold_of = np.concatenate(y_d_s[t][3])
        products = {"yd": yc * dc, "ys": yc * sc, "dd": dc * dc, "ds": dc * sc, "ss": sc * sc}
        by_fold = {k: np.bincount(fold_of, weights=v.sum(axis=1)) for k, v in products.items()}
        for k in by_fold:  # the fold sums the rule was given: fold k is copy k's fold
            np.testing.assert_allclose(fitted[model.tissues.index(t)][k], by_fold[k], rtol=1e-4, atol=1e-4)
        expected = one_se_weights(by_fold, has_skip=True, tolerance_se=0)  # cross-fitted: least squares
        np.testing.assert_allclose(table.loc[t, ["decoder_weight", "skip_weight"]], expected, atol=2e-3)
    np.testing.assert_allclose(
        model.calibration.to_numpy(), table[["decoder_weight", "skip_weight"]].to_numpy()
    )


def test_cross_fitting_errors_name_the_argument():
    mdata, _ = hyfa.data.simulate(n_donors=20, n_tissues=2, n_genes=6, missing_rate=0.0, seed=0)
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    for bad in (1, -2, 2.5, True, 19):  # 18 training donors
        with pytest.raises(ValueError, match=r"calibration_folds must be 0 or an integer from 2 to the 18"):
            model.train(max_epochs=1, calibration_folds=bad, enable_progress_bar=False)
    assert not model.is_trained_  # refused before training
    model.train(max_epochs=1, calibrate=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match="n_folds must be 0 or an integer from 2"):
        model.calibrate(n_folds=1)
    with pytest.raises(ValueError, match=r"must not set \['train_donors'\]"):
        model.calibrate(n_folds=2, train_kwargs={"train_donors": ["x"]})
    with pytest.raises(ValueError, match="donors or n_folds, not both"):
        model.calibrate(n_folds=2, donors=list(mdata.obs_names[-2:]))
    with pytest.raises(ValueError, match="train_kwargs is used with n_folds only"):
        model.calibrate(train_kwargs={"max_epochs": 1})


def test_cross_fitting_deals_two_tissue_donors_round_the_folds_and_skips_when_too_few(caplog, monkeypatch):
    """Every copy keeps a donor with two tissues to train on; with fewer such donors than needed, no copies."""
    from hyfa.model._calibration import CalibrationMixin

    folds = []
    original = CalibrationMixin._calibration_sums

    def record(self, donors, *args, **kwargs):
        folds.append(set(donors))
        return original(self, donors, *args, **kwargs)

    monkeypatch.setattr(CalibrationMixin, "_calibration_sums", record)
    mdata, _ = hyfa.data.simulate(n_donors=30, n_tissues=2, n_genes=6, missing_rate=0.0, seed=0)
    names = list(mdata.obs_names)
    paired = names[:3]  # only these keep both tissues
    mdata = md.MuData({"tissue_0": mdata["tissue_0"].copy(), "tissue_1": mdata["tissue_1"][paired].copy()})
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    model.train(max_epochs=1, train_donors=names, calibrate=False, enable_progress_bar=False)
    table = model.calibrate(
        n_folds=3, min_donors=1, train_kwargs={"max_epochs": 1, "enable_progress_bar": False}
    )
    assert [len(fold & set(paired)) for fold in folds] == [1, 1, 1]  # one two-tissue donor per fold
    assert table["n_donors"].sum() >= 1
    with caplog.at_level(logging.WARNING, logger="hyfa.model._calibration"):
        table = model.calibrate(n_folds=3)  # min_donors=6 > the 3 paired donors: no copies trained
    assert "Not calibrating: 3 training donors gave two tissues, cross-fitting needs 6" in caplog.text
    assert (table["n_donors"] == 0).all() and model.module.calibration.is_identity


def test_train_cross_fits_without_handing_the_users_callbacks_to_the_copies():
    """The fold copies train without the user's stateful ``callbacks`` (a callback sees one run, not four)."""
    from lightning.pytorch.callbacks import Callback

    class Starts(Callback):
        def __init__(self):
            self.epochs = []

        def on_train_start(self, trainer, pl_module):
            self.epochs.append(trainer.max_epochs)

    mdata, _ = hyfa.data.simulate(n_donors=30, n_tissues=2, n_genes=6, missing_rate=0.0, seed=0)
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    starts = Starts()
    model.train(max_epochs=2, calibration_folds=3, callbacks=[starts], enable_progress_bar=False)
    assert starts.epochs == [2]  # the user's run only, not the 3 copies'
    assert model.history["calibration"]["n_donors"].sum() > 0  # yet cross-fitted
