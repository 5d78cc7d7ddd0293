"""The cross-fitting copies kept as an ensemble: its mixture, its place in predictions, saving, and its lifetime."""

import numpy as np
import pytest
import scvi
import torch
from hyfa_testing import TINY

import hyfa
from hyfa.model._calibration import CalibrationMixin
from hyfa.model._ensemble import combine


def test_combine_is_the_equal_mixtures_mean_and_sd():
    """Mean of the means; sd from the law of total variance, checked against draws from the mixture."""
    rng = np.random.default_rng(0)
    means, sds = rng.normal(size=(3, 2, 4)), rng.uniform(0.5, 2.0, size=(3, 2, 4))
    preds = [
        {"mean": torch.tensor(m), "sd": torch.tensor(s), "offset": torch.tensor(2 * m)}
        for m, s in zip(means, sds, strict=True)
    ]
    out = combine(preds)
    member = rng.integers(0, 3, size=200_000)
    draws = rng.normal(means[member], sds[member])  # (n_draws, 2, 4) from the equal-weight mixture
    np.testing.assert_allclose(out["mean"].numpy(), means.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(out["offset"].numpy(), 2 * means.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(out["sd"].numpy(), draws.std(axis=0), rtol=0.02)
    assert combine(preds[:1]) is preds[0]


def test_combine_keeps_a_small_sd_beside_a_large_mean_in_float32():
    preds = [{"mean": torch.full((2,), 1000.0), "sd": torch.full((2,), 0.01)} for _ in range(3)]
    torch.testing.assert_close(combine(preds)["sd"], torch.full((2,), 0.01), rtol=1e-3, atol=0)


def _mixture(model, mdata, donors):
    """Reference path: per tissue, the stacked means and sds of the model alone and of one new HYFA per kept state
    dict (public API: ``module.load_state_dict``), each predicting with the model's calibration."""
    states, model.fold_models_ = model.fold_models_, None
    try:
        preds = [model.get_imputed_expression(donors=donors)]
    finally:
        model.fold_models_ = states
    params = {**model.init_params_["non_kwargs"], **model.init_params_["kwargs"]}
    for state in states:
        member = hyfa.HYFA(mdata, **params)
        member.module.load_state_dict(state)
        member.module.calibration.load_state_dict(model.module.calibration.state_dict())
        member.is_trained_ = True
        preds.append(member.get_imputed_expression(donors=donors))
    return {
        t: tuple(
            np.stack([p[t].X if k == "X" else p[t].layers[k] for p in preds]).astype(np.float64)
            for k in ("X", "sd")
        )
        for t in model.tissues
    }


def _assert_is_mixture(model, mdata, donors):
    ensemble = model.get_imputed_expression(donors=donors)
    for t, (means, sds) in _mixture(model, mdata, donors).items():
        np.testing.assert_allclose(ensemble[t].X, means.mean(axis=0), rtol=1e-5, atol=1e-5)
        expected_sd = np.sqrt((sds**2).mean(axis=0) + means.var(axis=0))
        np.testing.assert_allclose(ensemble[t].layers["sd"], expected_sd, rtol=1e-4, atol=1e-5)
        assert np.abs(ensemble[t].X - means[0]).max() > 1e-3  # the copies do change the prediction
    return ensemble


@pytest.fixture(scope="module")
def cross_fitted():
    """A tiny model cross-fitted over 3 folds of its 30 training donors, with the copies it trained."""
    mdata, _ = hyfa.data.simulate(n_donors=40, n_tissues=2, n_genes=12, missing_rate=0.0, seed=3)
    hyfa.HYFA.setup_mudata(mdata)
    scvi.settings.seed = 0
    model = hyfa.HYFA(mdata, **TINY)
    model.train(
        max_epochs=3, train_donors=list(mdata.obs_names[:30]), calibrate=False, enable_progress_bar=False
    )
    copies = []
    original = CalibrationMixin._calibration_sums

    def record(self, *args, **kwargs):
        copies.append(self)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CalibrationMixin, "_calibration_sums", record)
        model.calibrate(n_folds=3, min_donors=2, train_kwargs={"max_epochs": 3})
    return model, mdata, copies


def test_ensemble_predicts_the_mixture_of_the_model_and_its_copies(cross_fitted):
    """Means and sds are those of the model and its 3 copies, each predicting with the model's calibration."""
    model, mdata, copies = cross_fitted
    assert model.n_ensemble == 4 and len(copies) == 3
    for copy, state in zip(copies, model.fold_models_, strict=True):  # the kept weights are the copies'
        for key, value in copy.module.state_dict().items():
            if not key.startswith("calibration."):
                torch.testing.assert_close(state[key], value.cpu())
    test = list(mdata.obs_names[30:])
    ensemble = _assert_is_mixture(model, mdata, test)
    saved = {k: v.clone() for k, v in model.module.calibration.state_dict().items()}
    try:  # new weights reach the already built copies
        model.module.calibration.set(torch.tensor([0.5, 0.2]), torch.tensor([2.0, 0.7]))
        _assert_is_mixture(model, mdata, test)
    finally:
        model.module.calibration.load_state_dict(saved)
    _, draws = model.get_imputed_expression(donors=test, n_samples=4000, return_samples=True)
    for t in model.tissues:  # draws from a normal with the mixture's mean and sd
        sd = ensemble[t].layers["sd"]
        assert np.abs(draws[t].mean(axis=0) - ensemble[t].X).max() < 5 * sd.max() / np.sqrt(4000)
        np.testing.assert_allclose(draws[t].std(axis=0), sd, rtol=0.08)


def test_ensemble_is_saved_and_loaded_with_the_model(cross_fitted, tmp_path):
    model, mdata, _ = cross_fitted
    test = list(mdata.obs_names[30:])
    model.save(tmp_path / "model")
    loaded = hyfa.HYFA.load(tmp_path / "model", mdata)
    assert loaded.n_ensemble == 4
    for t in model.tissues:
        np.testing.assert_allclose(
            loaded.get_imputed_expression(donors=test)[t].X, model.get_imputed_expression(donors=test)[t].X
        )


def _trained_tiny(seed: int, **train_kwargs):
    """Return (model, mdata, train, val): a tiny HYFA on 30 simulated donors with both tissues, 20 of them trained 2 epochs."""
    mdata, _ = hyfa.data.simulate(n_donors=30, n_tissues=2, n_genes=8, missing_rate=0.0, seed=seed)
    hyfa.HYFA.setup_mudata(mdata)
    scvi.settings.seed = 0
    model = hyfa.HYFA(mdata, **TINY)
    train, val = list(mdata.obs_names[:20]), list(mdata.obs_names[20:])
    model.train(
        max_epochs=2, train_donors=train, validation_donors=val, enable_progress_bar=False, **train_kwargs
    )
    return model, mdata, train, val


def test_ensemble_lives_until_the_next_training_or_cross_fit_without_it():
    """Recalibrating on donors keeps the ensemble; ``ensemble=False`` or training again drops it."""
    model, mdata, train, val = _trained_tiny(seed=4, calibration_folds=2)
    assert model.n_ensemble == 3  # train's default: below 200 training donors, cross-fitted and kept
    _assert_is_mixture(model, mdata, val)
    model.calibrate(donors=val, min_donors=2)
    assert model.n_ensemble == 3
    model.calibrate(n_folds=2, min_donors=2, train_kwargs={"max_epochs": 2}, ensemble=False)
    assert model.n_ensemble == 1 and model.fold_models_ is None
    model.get_imputed_expression(donors=val)
    assert model._fold_modules is None  # the built copies are freed too
    model.calibrate(n_folds=2, min_donors=2, train_kwargs={"max_epochs": 2})
    assert model.n_ensemble == 3
    _assert_is_mixture(model, mdata, val)  # the new copies, not those built before
    model.train(
        max_epochs=2, train_donors=train, validation_donors=val, calibrate=False, enable_progress_bar=False
    )
    assert model.n_ensemble == 1


def test_multi_process_training_calibrates_on_validation_donors_without_an_ensemble(caplog):
    """Under DDP (``trainer.world_size > 1``) the copies cannot be trained: validation calibration, with a warning."""
    from types import SimpleNamespace

    model, _, _, val = _trained_tiny(seed=5, calibrate=False)
    model.trainer = SimpleNamespace(world_size=2)
    with caplog.at_level("WARNING", logger="hyfa.model._calibration"):
        model._calibrate_after_training(True, 5, {"max_epochs": 2})
    assert "needs single-process training" in caplog.text
    table = model.history_["calibration"]
    assert model.n_ensemble == 1 and table["n_donors"].max() <= len(val)  # fitted on the validation donors
