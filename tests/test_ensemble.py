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
    ensemble = model.get_imputed_expression(donors=test)
    members = []
    for copy in copies:
        copy.module.calibration.load_state_dict(model.module.calibration.state_dict())
        members.append(copy.get_imputed_expression(donors=test))
    states, model.fold_models_ = model.fold_models_, None
    try:
        members.append(model.get_imputed_expression(donors=test))
    finally:
        model.fold_models_ = states
    for t in model.tissues:
        means = np.stack([m[t].X for m in members]).astype(np.float64)
        sds = np.stack([m[t].layers["sd"] for m in members]).astype(np.float64)
        np.testing.assert_allclose(ensemble[t].X, means.mean(axis=0), rtol=1e-5, atol=1e-5)
        expected_sd = np.sqrt((sds**2).mean(axis=0) + means.var(axis=0))
        np.testing.assert_allclose(ensemble[t].layers["sd"], expected_sd, rtol=1e-4, atol=1e-5)
        assert np.abs(ensemble[t].X - members[-1][t].X).max() > 1e-3  # the copies do change the prediction
    _, draws = model.get_imputed_expression(donors=test, n_samples=400, return_samples=True)
    for t in model.tissues:  # draws from a normal with the mixture's mean and sd
        sd = ensemble[t].layers["sd"]
        assert np.abs(draws[t].mean(axis=0) - ensemble[t].X).max() < 5 * sd.max() / np.sqrt(400)
        np.testing.assert_allclose(draws[t].std(axis=0), sd, rtol=0.25)


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


def test_ensemble_lives_until_the_next_training_or_cross_fit_without_it():
    """Recalibrating on donors keeps the ensemble; ``ensemble=False`` or training again drops it."""
    mdata, _ = hyfa.data.simulate(n_donors=30, n_tissues=2, n_genes=8, missing_rate=0.0, seed=4)
    hyfa.HYFA.setup_mudata(mdata)
    scvi.settings.seed = 0
    model = hyfa.HYFA(mdata, **TINY)
    train, val = list(mdata.obs_names[:20]), list(mdata.obs_names[20:])
    model.train(
        max_epochs=2,
        train_donors=train,
        validation_donors=val,
        calibration_folds=2,
        enable_progress_bar=False,
    )
    assert model.n_ensemble == 3  # train's default: below 200 training donors, cross-fitted and kept
    model.calibrate(donors=val, min_donors=2)
    assert model.n_ensemble == 3
    model.calibrate(n_folds=2, min_donors=2, train_kwargs={"max_epochs": 2}, ensemble=False)
    assert model.n_ensemble == 1 and model.fold_models_ is None
    model.calibrate(n_folds=2, min_donors=2, train_kwargs={"max_epochs": 2})
    assert model.n_ensemble == 3
    model.train(
        max_epochs=2, train_donors=train, validation_donors=val, calibrate=False, enable_progress_bar=False
    )
    assert model.n_ensemble == 1


def test_multi_process_training_calibrates_on_validation_donors_without_an_ensemble(caplog):
    """Under DDP (``trainer.world_size > 1``) the copies cannot be trained: validation calibration, with a warning."""
    from types import SimpleNamespace

    mdata, _ = hyfa.data.simulate(n_donors=30, n_tissues=2, n_genes=8, missing_rate=0.0, seed=5)
    hyfa.HYFA.setup_mudata(mdata)
    scvi.settings.seed = 0
    model = hyfa.HYFA(mdata, **TINY)
    train, val = list(mdata.obs_names[:20]), list(mdata.obs_names[20:])
    model.train(
        max_epochs=2, train_donors=train, validation_donors=val, calibrate=False, enable_progress_bar=False
    )
    model.trainer = SimpleNamespace(world_size=2)
    with caplog.at_level("WARNING", logger="hyfa.model._calibration"):
        model._calibrate_after_training(True, 5, {"max_epochs": 2})
    assert "needs single-process training" in caplog.text
    table = model.history_["calibration"]
    assert model.n_ensemble == 1 and table["n_donors"].max() <= len(val)  # fitted on the validation donors
