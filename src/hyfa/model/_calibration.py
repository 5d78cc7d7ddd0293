"""``HYFA.calibrate``: fit, on held-out donors, how much of the decoder and of the gene-level skip to trust."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from hyfa._constants import REGISTRY_KEYS
from hyfa.module import fixed_split

from ._donors import default_calibrate
from ._ensemble import on_cpu
from ._validation import _preview, check_positive_int

logger = logging.getLogger(__name__)

#: Validation donors a tissue needs as a target (with another tissue as source) to be calibrated.
MIN_CALIBRATION_DONORS = 6

#: Donor folds over which the validation error's standard error is estimated (fewer with fewer donors).
MAX_FOLDS = 10

#: Arguments of :meth:`~hyfa.HYFA.train` passed on to the copies cross-fitting trains (with ``trainer_kwargs``).
FOLD_TRAIN_ARGS = frozenset(
    {
        "max_epochs",
        "lr",
        "batch_size",
        "early_stopping",
        "accelerator",
        "devices",
        "datasplitter_kwargs",
        "plan_kwargs",
    }
)

#: Trainer arguments of :meth:`~hyfa.HYFA.train` its fold copies do not get: stateful objects of the user's run.
NOT_FOR_COPIES = frozenset({"callbacks", "logger"})

#: Arguments of :meth:`~hyfa.HYFA.train` that cross-fitting sets for the fold copies itself.
CROSS_FIT_RESERVED = frozenset(
    {
        "train_donors",
        "validation_donors",
        "split_key",
        "calibrate",
        "calibration_folds",
        "train_size",
        "validation_size",
    }
)


def check_n_folds(n_folds, n_donors: int, argument: str) -> int:
    """Return ``n_folds`` if it is 0 or an integer from 2 to ``n_donors``; else raise, naming ``argument``."""
    valid = isinstance(n_folds, int | np.integer) and not isinstance(n_folds, bool)
    if not valid or not (n_folds == 0 or 2 <= n_folds <= n_donors):
        raise ValueError(
            f"{argument} must be 0 or an integer from 2 to the {n_donors} training donors, got {n_folds!r}."
        )
    return int(n_folds)


def calibrates(calibrate: bool | None, n_folds, n_train: int) -> bool:
    """Return whether :meth:`HYFA.train` calibrates (``None``: below 200 training donors), checking ``n_folds`` if so."""
    calibrate = default_calibrate(n_train) if calibrate is None else bool(calibrate)
    if calibrate:
        check_n_folds(n_folds, n_train, "calibration_folds")
    return calibrate


def fit_weights(sums: dict[str, float], has_skip: bool) -> tuple[float, float]:
    """Return ``(alpha, beta)`` minimizing ``sum (y - alpha d - beta s)^2``, ``0 <= alpha <= 1``, ``beta >= 0``.

    ``sums`` holds the centered cross products ``yd, ys, dd, ds, ss`` (``y`` observed, ``d`` the
    decoder's part, ``s`` the skip's, each centered per gene over donors). Without a skip,
    ``beta`` is 1.
    """
    yd, ys, dd, ds, ss = (sums[k] for k in ("yd", "ys", "dd", "ds", "ss"))
    if not has_skip or ss <= 0:
        return (float(np.clip(yd / dd, 0.0, 1.0)) if dd > 0 else 1.0), 1.0
    candidates = [(0.0, max(ys / ss, 0.0)), (1.0, max((ys - ds) / ss, 0.0))]
    if dd > 0:
        candidates.append((float(np.clip(yd / dd, 0.0, 1.0)), 0.0))
    det = dd * ss - ds * ds
    if det > 0:
        a, b = (yd * ss - ys * ds) / det, (ys * dd - yd * ds) / det
        if 0 <= a <= 1 and b >= 0:
            candidates.append((a, b))
    a, b = min(candidates, key=lambda ab: squared_error(sums, *ab))
    return float(a), float(b)


def one_se_weights(
    folds: dict[str, np.ndarray], has_skip: bool, tolerance_se: float = 1.0
) -> tuple[float, float]:
    """Return the smallest decoder weight whose error is within ``tolerance_se`` standard errors of the best fit's.

    The one-standard-error rule (:cite:t:`Hastie2009`, 7.10): the least-squares weights
    (:func:`fit_weights` of the cross products summed over the donor folds ``folds``, one value
    per fold each) are the best fit to the validation donors, but with a few
    donors the decoder's share is noisy. Among decoder weights ``alpha`` from 0 up to the fit's
    (each with its best skip weight), return the smallest whose squared error exceeds the fit's by
    at most ``tolerance_se`` standard errors of that excess, estimated from its spread over the
    folds. A
    decoder that helps new donors clearly keeps its weight; one that helps no more than chance
    would is shrunk towards the skip and the gene means. Without a skip, or with fewer than 3
    folds, the least-squares weights are returned.
    """
    sums = {k: float(np.sum(v)) for k, v in folds.items()}
    alpha, beta = fit_weights(sums, has_skip)
    n_folds = len(folds["yd"])
    if not has_skip or sums["ss"] <= 0 or n_folds < 3 or tolerance_se <= 0 or alpha == 0:
        return alpha, beta
    best = squared_error(folds, alpha, beta)
    for a in np.linspace(0.0, alpha, 51)[:-1]:
        b = max((sums["ys"] - a * sums["ds"]) / sums["ss"], 0.0)
        excess = squared_error(folds, a, b) - best
        if excess.sum() <= tolerance_se * np.sqrt(n_folds) * excess.std(ddof=1):
            return float(a), float(b)
    return alpha, beta


def squared_error(sums: dict[str, float], alpha: float, beta: float) -> float:
    """Return ``sum (y - alpha d - beta s)^2`` from the cross products, less the constant ``sum y^2``.

    The cross products may be arrays (e.g. one per donor fold): the errors are then arrays too.
    """
    return (
        -2 * alpha * sums["yd"]
        - 2 * beta * sums["ys"]
        + alpha**2 * sums["dd"]
        + 2 * alpha * beta * sums["ds"]
        + beta**2 * sums["ss"]
    )


class CalibrationMixin:
    """:meth:`calibrate` and :attr:`calibration` of :class:`~hyfa.HYFA`."""

    @property
    def calibration(self) -> pd.DataFrame:
        """The decoder's and the gene-level skip's calibration weights per tissue (both 1 where uncalibrated)."""
        part = self.module.calibration
        return pd.DataFrame(
            {
                "decoder_weight": part.decoder_weight.cpu().numpy(),
                "skip_weight": part.skip_weight.cpu().numpy(),
            },
            index=pd.Index(self.tissues, name="tissue"),
        )

    def _two_tissues(self, rows) -> np.ndarray:
        """Return, for donor rows ``rows`` (``None``: none), whether each gave two tissues (can be a target)."""
        rows = np.asarray([] if rows is None else rows, dtype=int)
        observed = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.OBSERVED_KEY))
        return (observed[rows] > 0).sum(axis=1) >= 2

    def _has_calibration_donors(self) -> bool:
        """Whether the last training's validation donors include one who gave two tissues."""
        return bool(self._two_tissues(getattr(self, "validation_indices", None)).any())

    def calibrate(
        self,
        donors: Sequence[str] | None = None,
        min_donors: int = MIN_CALIBRATION_DONORS,
        n_source_draws: int = 4,
        tolerance_se: float | None = None,
        batch_size: int | None = None,
        n_folds: int = 0,
        train_kwargs: dict | None = None,
        ensemble: bool = True,
    ) -> pd.DataFrame:
        """Fit and set, per target tissue, the weights of the decoder and of the gene-level skip on held-out donors.

        :meth:`train` calls it after training in cohorts of under 200 training donors
        (``calibrate=None``), cross-fitted over 5 folds of the training donors
        (``calibration_folds=5``). A Gaussian
        prediction is the decoder's mean plus the gene-level skip's offset (``gene_skip``). For
        each tissue ``t`` the calibrated mean is ``m_t + alpha_t (decoder - m_t) + beta_t skip``,
        with ``m_t`` the tissue's registered gene means: ``alpha_t`` in [0, 1] shrinks the
        decoder's donor-specific part towards them, ``beta_t >= 0`` rescales the skip.

        With a hundred training donors the decoder fits them far better than new donors; its
        donor-specific part is then mostly noise on new donors, and (per-gene correlations being
        scale-free) dilutes the signal the skip carries. The weights are fitted by least squares
        on the donor-to-donor variation (centered per gene) of held-out donors' observed
        tissues, each predicted from source sets drawn as training draws them (pseudo-masks,
        ``n_source_draws`` per donor). The held-out donors are either ``donors`` (by default the
        validation donors), predicted by this model (or its kept ensemble), or, with ``n_folds``
        folds, every training donor, predicted by a copy of the model trained (with
        ``train_kwargs``) on the other folds (cross-fitting: ten times the donors of a 10%
        validation split, for ``n_folds`` more trainings). On ten validation donors the least-squares decoder weight is noisy, so the
        smallest ``alpha`` whose error is within ``tolerance_se`` standard errors of the
        least-squares fit's is kept there (the one-standard-error rule :cite:p:`Hastie2009`; the
        error's spread is taken over up to 10 folds of the donors): the decoder keeps its share
        where it clearly helps new donors, and is otherwise shrunk towards the skip and the gene
        means. Cross-fitted, the least-squares weights are kept by default.

        Parameters
        ----------
        donors
            Donors to fit on, never training donors; ``None`` uses the validation donors of the last
            :meth:`train` (without ``n_folds``).
        min_donors
            Held-out donors a tissue needs (observed, with another tissue as source); tissues
            with fewer stay uncalibrated.
        n_source_draws
            Source / target splits drawn per donor (the first is the validation loss's).
        tolerance_se
            Standard errors of held-out error the decoder's weight may cost (the
            one-standard-error rule); ``0`` keeps the least-squares weights. ``None``: 1 on
            ``donors``, 0 cross-fitted (``benchmarks/small_cohort.py``: on ~90 cross-fitted donors
            the rule still kept the decoder from helping where least squares let it).
        batch_size
            Donors per minibatch of the predictions.
        n_folds
            ``0``: fit on ``donors``. ``k >= 2``: cross-fit over ``k`` folds of the last
            :meth:`train`'s training donors.
        train_kwargs
            With ``n_folds``: arguments of the fold copies' :meth:`train` (e.g. ``max_epochs``,
            ``lr``, ``plan_kwargs``); :meth:`train` passes its own. The donor split and
            ``calibrate`` are set here.
        ensemble
            With ``n_folds``: keep the copies (``fold_models_``, saved with the model) and predict
            Gaussian means as the average of this model's and theirs (see the FAQ on small
            cohorts); ``False`` discards them. Without ``n_folds``, a kept ensemble stays.

        Returns
        -------
        Per tissue: ``n_donors`` used, ``decoder_weight`` (``alpha``) and ``skip_weight``
        (``beta``); :attr:`calibration` then holds the weights.
        """
        if not self.is_trained_:
            raise RuntimeError("calibrate needs a trained model: call train() first.")
        if self.module.counts:
            raise ValueError(
                f"calibrate supports gene_likelihood='normal' only; this model's is "
                f"{self.module.gene_likelihood!r}."
            )
        min_donors = check_positive_int(min_donors, "min_donors")
        n_source_draws = check_positive_int(n_source_draws, "n_source_draws")
        if tolerance_se is None:
            tolerance_se = 0.0 if n_folds else 1.0
        if not isinstance(tolerance_se, int | float) or not np.isfinite(tolerance_se) or tolerance_se < 0:
            raise ValueError(f"tolerance_se must be a finite number >= 0, got {tolerance_se!r}.")
        if n_folds:
            return self._cross_fit(
                n_folds, donors, min_donors, n_source_draws, tolerance_se, batch_size, train_kwargs, ensemble
            )
        if train_kwargs:
            raise ValueError(
                "train_kwargs is used with n_folds only (cross-fitting trains copies of the model)."
            )
        if donors is None:
            found = getattr(self, "validation_indices", None)
            indices = np.asarray([] if found is None else found, dtype=int)
            if not len(indices):
                raise ValueError(
                    "The last training had no validation donors: pass donors=... or n_folds=..., or train "
                    "with validation donors (train_size < 1, validation_donors or split_key)."
                )
            donors = list(self.adata.obs_names[indices])
        indices = self._donor_indices(self.adata, donors, "calibration donors", argument="donors")
        trained_on = getattr(self, "train_indices", None)
        training = np.intersect1d(indices, np.asarray([] if trained_on is None else trained_on, dtype=int))
        if len(training):
            raise ValueError(
                f"calibrate must not use training donors: {_preview(self.adata.obs_names[training])}."
            )
        self.module.calibration.reset()  # the parts are those of the uncalibrated prediction
        sums, used = {}, {}
        self._calibration_sums(donors, n_source_draws, batch_size, sums, used)
        return self._set_calibration(sums, used, min_donors, tolerance_se, len(donors))

    def _calibrate_after_training(self, calibrate: bool, n_folds: int, train_kwargs: dict) -> None:
        """:meth:`train`'s last step: if ``calibrate``, cross-fitted over ``n_folds`` or on the validation donors."""
        if not calibrate:
            return
        if n_folds and getattr(getattr(self, "trainer", None), "world_size", 1) > 1:
            logger.warning(
                "Cross-fitted calibration needs single-process training: calibrating on validation donors."
            )
            n_folds = 0
        if not self.module.counts and (n_folds or self._has_calibration_donors()):
            train_kwargs = {k: v for k, v in train_kwargs.items() if k not in NOT_FOR_COPIES}
            cross_fit = {"n_folds": n_folds, "train_kwargs": train_kwargs} if n_folds else {}
            self.history_["calibration"] = self.calibrate(**cross_fit)

    def _cross_fit(
        self, n_folds, donors, min_donors, n_source_draws, tolerance_se, batch_size, train_kwargs, ensemble
    ):
        """:meth:`calibrate` with ``n_folds``: fit on every training donor, predicted by a copy trained without its fold.

        With ``ensemble``, the copies are kept as the ensemble (``fold_models_``).
        """
        if donors is not None:
            raise ValueError("Pass donors or n_folds, not both: cross-fitting holds out the training donors.")
        rows = np.asarray(getattr(self, "train_indices", []), dtype=int)
        names = self.adata.obs_names[rows]
        check_n_folds(n_folds, len(names), "n_folds")
        train_kwargs = dict(train_kwargs or {})
        reserved = sorted(set(train_kwargs) & CROSS_FIT_RESERVED)
        if reserved:
            raise ValueError(f"train_kwargs must not set {reserved}: cross-fitting sets the donor split.")
        paired = self._two_tissues(rows)  # donors who can be targets, dealt round the folds first
        self._forget_calibration()
        if paired.sum() < max(min_donors, 2):  # too few to fit, and a copy could have none to train on
            logger.warning(
                "Not calibrating: %d training donors gave two tissues, cross-fitting needs %d.",
                paired.sum(),
                max(min_donors, 2),
            )
            return self._set_calibration({}, {}, min_donors, tolerance_se, 0)
        rng = np.random.default_rng(self.module.validation_seed)
        order = np.concatenate(
            [rng.permutation(np.flatnonzero(paired)), rng.permutation(np.flatnonzero(~paired))]
        )
        folds = [list(names[order[k::n_folds]]) for k in range(n_folds)]
        params = {**self.init_params_["non_kwargs"], **self.init_params_["kwargs"]}
        logger.info("Cross-fitted calibration: training %d copies of the model, one per donor fold.", n_folds)
        sums, used, states = {}, {}, []
        for k, fold in enumerate(folds):
            held_out = set(fold)
            copy = type(self)(self.adata, **params)
            copy.train(
                train_donors=[d for d in names if d not in held_out],
                validation_donors=fold,
                calibrate=False,
                **train_kwargs,
            )
            copy._calibration_sums(fold, n_source_draws, batch_size, sums, used, fold=(k, n_folds))
            states.append(on_cpu(copy.module.state_dict()))  # the copy's device memory is freed with it
        table = self._set_calibration(sums, used, min_donors, tolerance_se, len(names))
        self._set_ensemble(states if ensemble else None)
        return table

    def _calibration_sums(
        self,
        donors: Sequence[str],
        n_source_draws: int,
        batch_size: int | None,
        sums: dict[int, _Sums],
        used: dict[int, set],
        fold: tuple[int, int] | None = None,
    ) -> None:
        """Add, per target tissue, ``donors``' observed and predicted parts to ``sums`` and the donors to ``used``.

        ``fold`` ``(k, n_folds)`` puts every donor in fold ``k``; ``None`` spreads the donors over
        up to :data:`MAX_FOLDS` folds (a donor's rows stay in one fold).
        """
        with warnings.catch_warnings():  # donors without another tissue cannot be used: left out
            warnings.simplefilter("ignore", UserWarning)
            plan = self._plan(None, donors, None, None, exclude_target=True)
        n_folds = min(len(plan.indices), MAX_FOLDS) if fold is None else fold[1]
        for t in plan.targets:
            sums.setdefault(t, _Sums(len(self.genes), n_folds))
            used.setdefault(t, set())
        observed, rows = torch.as_tensor(plan.observed), torch.as_tensor(plan.indices)
        for draw in range(n_source_draws):  # the source sets training draws: few sources more often
            source, target = fixed_split(
                observed, rows, self.module.validation_seed + draw, exponent=self.module.source_count_exponent
            )
            source, target = source.numpy(), target.numpy()
            for t in plan.targets:
                plan.keep[t], plan.sources[t] = target[:, t], source & target[:, t, None]
            for t, position, pred in self._predictions(plan, batch_size, parts=True):
                offset = pred["offset"]
                decoder = pred["mean"] - offset if offset is not None else pred["mean"]
                folds = position % n_folds if fold is None else np.full(len(position), fold[0])
                sums[t].add(pred["observed"], decoder, offset, folds=folds)
                used[t].update(self.adata.obs_names[plan.indices[position]].tolist())

    def _set_calibration(self, sums, used, min_donors, tolerance_se, n_donors) -> pd.DataFrame:
        """Fit the weights from per-tissue sums (see :meth:`calibrate`), set them and return the table."""
        has_skip = self.module.skip is not None
        records = []
        for t in range(len(self.tissues)):
            n = len(used.get(t, ()))
            enough = n >= min_donors and sums[t].n.sum() > 1
            alpha, beta = (
                one_se_weights(sums[t].fold_centered(), has_skip, tolerance_se) if enough else (1.0, 1.0)
            )
            if alpha == 0 and (beta == 0 or not has_skip):  # would predict the gene means alone
                logger.warning(
                    "Not calibrating %r: its validation donors' predictions do not correlate with their "
                    "observed expression, and calibration would predict each gene's mean for every donor.",
                    self.tissues[t],
                )
                alpha, beta = 1.0, 1.0
            records.append((n, alpha, beta))
        table = pd.DataFrame(
            records,
            columns=["n_donors", "decoder_weight", "skip_weight"],
            index=pd.Index(self.tissues, name="tissue"),
        )
        self.module.calibration.set(table["decoder_weight"].to_numpy(), table["skip_weight"].to_numpy())
        fitted = table[table["n_donors"] >= min_donors]
        logger.info(
            "Calibrated %d of %d tissues on %d donors: decoder weight median %.2f, skip weight median %.2f.",
            len(fitted),
            len(table),
            n_donors,
            fitted["decoder_weight"].median() if len(fitted) else 1.0,
            fitted["skip_weight"].median() if len(fitted) else 1.0,
        )
        return table


class _Sums:
    """Running sums of observed (y), decoder (d) and skip (s) values and of their products, per donor fold.

    First moments are kept per fold and gene, products per fold summed over genes: enough for the
    cross products centered per gene over all donors, in total and as each fold's share.
    """

    def __init__(self, n_genes: int, n_folds: int = 1):
        self.n = np.zeros(n_folds)
        self.first = {k: np.zeros((n_folds, n_genes)) for k in ("y", "d", "s")}
        self.second = {k: np.zeros(n_folds) for k in ("yd", "ys", "dd", "ds", "ss")}

    def add(
        self, y: np.ndarray, d: np.ndarray, s: np.ndarray | None, folds: np.ndarray | None = None
    ) -> None:
        """Add rows ``y``, ``d``, ``s`` (``(n_rows, n_genes)``; ``s`` ``None``: zero) of donor folds ``folds``."""
        values = {"y": y.astype(np.float64), "d": d.astype(np.float64)}
        values["s"] = np.zeros_like(values["d"]) if s is None else s.astype(np.float64)
        folds = np.zeros(len(y), dtype=int) if folds is None else np.asarray(folds, dtype=int)
        np.add.at(self.n, folds, 1)
        for k, v in values.items():
            np.add.at(self.first[k], folds, v)
        for k in self.second:
            np.add.at(self.second[k], folds, np.einsum("ij,ij->i", values[k[0]], values[k[1]]))

    def _means(self) -> dict[str, np.ndarray]:
        return {k: v.sum(axis=0) / self.n.sum() for k, v in self.first.items()}

    def fold_centered(self) -> dict[str, np.ndarray]:
        """Return each fold's ``(n_folds,)`` share of the cross products centered per gene (over all folds), summed over genes."""
        mean = self._means()
        out = {}
        for k, v in self.second.items():
            a, b = k[0], k[1]
            out[k] = v - self.first[a] @ mean[b] - self.first[b] @ mean[a] + self.n * float(mean[a] @ mean[b])
        return out
