"""Simple multi-tissue imputation baselines with the call shape of :meth:`hyfa.HYFA.get_imputed_expression`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from mudata import MuData
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.metrics.pairwise import nan_euclidean_distances

from hyfa._docs import baseline_data, doc_params
from hyfa._utils import as_list as _as_list

from ._baseline_base import _BaseImputation
from ._data_access import _check_tissues, _covariate_matrix, _format_names

logger = logging.getLogger(__name__)

__all__ = ["MeanImputation", "SurrogateImputation", "KNNImputation", "TEEBoT"]


@doc_params(baseline_data=baseline_data)
class MeanImputation(_BaseImputation):
    """Predict every donor's target-tissue expression as the per-gene training mean of that tissue.

    Mean imputation is the simplest baseline of :cite:p:`Vinas2023`: it ignores the donor's measured
    tissues and returns, for each gene, the mean over training donors that have the target tissue.

    Parameters
    ----------
    {baseline_data}

    Examples
    --------
    >>> base = hyfa.tl.MeanImputation(mdata, layer="normalized").fit(train_donors)
    >>> lung = base.get_imputed_expression(target_tissues="Lung", donors=test_donors)
    """

    def _predict(self, mdata: MuData, target: str, sources: list[str], donors: list[str]) -> np.ndarray:
        def fit() -> np.ndarray:
            train = self._training_donors([target])
            return self._matrix(self.mdata, target, train).mean(axis=0)

        mean = self._cached((), target, fit)
        return np.broadcast_to(mean, (len(donors), len(mean)))


@doc_params(baseline_data=baseline_data)
class SurrogateImputation(_BaseImputation):
    """Predict a donor's target-tissue expression as the donor's own expression in a surrogate tissue.

    This baseline (e.g. whole blood as a proxy for any tissue, :cite:p:`Vinas2023`) learns nothing, so
    :meth:`fit` is optional. Every predicted donor must be observed in the surrogate tissue.

    Parameters
    ----------
    {baseline_data}
    surrogate_tissue
        Tissue whose expression is returned as the prediction. ``source_tissues``, if given to
        :meth:`get_imputed_expression`, must be this tissue alone.

    Examples
    --------
    >>> base = hyfa.tl.SurrogateImputation(mdata, layer="normalized", surrogate_tissue="Whole_Blood")
    >>> lung = base.get_imputed_expression(target_tissues="Lung", donors=test_donors)
    """

    _requires_fit = False

    def __init__(
        self,
        mdata: MuData,
        layer: str | None = None,
        gene_mask_key: str | None = None,
        surrogate_tissue: str = "Whole_Blood",
    ):
        super().__init__(mdata, layer=layer, gene_mask_key=gene_mask_key)
        _check_tissues(mdata, [surrogate_tissue], what="surrogate tissue")
        self.surrogate_tissue = surrogate_tissue

    @property
    def source_tissues(self) -> tuple[str, ...]:
        """The surrogate tissue, the only source this baseline predicts from."""
        return (self.surrogate_tissue,)

    def _resolve_sources(self, sources: list[str] | None) -> list[str]:
        if sources is not None and sources != [self.surrogate_tissue]:
            raise ValueError(
                f"SurrogateImputation uses `surrogate_tissue={self.surrogate_tissue!r}` as its only source; "
                f"got `source_tissues={sources}`."
            )
        return [self.surrogate_tissue]

    def _predict(self, mdata: MuData, target: str, sources: list[str], donors: list[str]) -> np.ndarray:
        # Donors lacking the surrogate were rejected by `get_imputed_expression`; guard anyway.
        pred = self._matrix(mdata, self.surrogate_tissue, donors)
        lacking = np.asarray(donors)[np.isnan(pred).all(axis=1)]
        if len(lacking):
            raise ValueError(
                f"Donors lacking the surrogate tissue {self.surrogate_tissue!r}: {_format_names(lacking)}."
            )
        return pred


@doc_params(baseline_data=baseline_data)
class KNNImputation(_BaseImputation):
    """Predict target-tissue expression from the k training donors closest in the source tissues.

    For each target tissue, the training donors observed in every source tissue and in the target are the
    candidate neighbours. A donor to predict is placed among them by the Euclidean distance over its
    source-tissue genes (one block per source) and covariates, and its prediction is the mean
    target-tissue expression of its ``n_neighbors`` nearest candidates. This is exactly what
    :class:`~sklearn.impute.KNNImputer` (uniform weights, NaN-Euclidean distance) returns when fitted on
    [source genes, target genes, covariates] of the training donors and applied to the donors to predict
    with their target genes set to NaN, as in the k-nearest-neighbours baseline of :cite:p:`Vinas2023`;
    computing the neighbours once instead of once per target gene makes it much faster.

    Parameters
    ----------
    {baseline_data}
    n_neighbors
        Number of neighbours (capped at the number of training donors available).
    covariate_keys
        Columns of ``mdata.obs`` appended as features (numeric as-is, categorical one-hot encoded); they
        enter the distance on their raw scale.

    Examples
    --------
    >>> knn = hyfa.tl.KNNImputation(mdata, layer="normalized", n_neighbors=20).fit(train_donors)
    >>> lung = knn.get_imputed_expression(target_tissues="Lung", source_tissues="Whole_Blood", donors=test)
    """

    _requires_sources = True

    def __init__(
        self,
        mdata: MuData,
        layer: str | None = None,
        gene_mask_key: str | None = None,
        n_neighbors: int = 20,
        covariate_keys: Sequence[str] | None = None,
    ):
        super().__init__(mdata, layer=layer, gene_mask_key=gene_mask_key)
        if n_neighbors < 1:
            raise ValueError(f"`n_neighbors` must be >= 1, got {n_neighbors}.")
        self.n_neighbors = int(n_neighbors)
        self.covariate_keys = _as_list(covariate_keys) or []

    def _features(
        self, mdata: MuData, sources: Sequence[str], donors: Sequence[str], categories: dict | None
    ) -> tuple[np.ndarray, dict]:
        blocks = [self._matrix(mdata, s, donors) for s in sources]
        covs, categories = _covariate_matrix(mdata, donors, self.covariate_keys, categories)
        return np.hstack([*blocks, covs]), categories

    def _predict(self, mdata: MuData, target: str, sources: list[str], donors: list[str]) -> np.ndarray:
        def fit() -> tuple[np.ndarray, np.ndarray, int, dict]:
            train = self._training_donors([*sources, target])
            k = min(self.n_neighbors, len(train))
            if k < self.n_neighbors:
                logger.warning(
                    "KNNImputation: only %d training donors have %s and %r; using n_neighbors=%d.",
                    len(train),
                    sources,
                    target,
                    k,
                )
            features, categories = self._features(self.mdata, sources, train, None)
            return features, self._matrix(self.mdata, target, train), k, categories

        train_features, train_target, k, categories = self._cached(sources, target, fit)
        query, _ = self._features(mdata, sources, donors, categories)
        # Same distance and neighbour selection as sklearn's KNNImputer (query rows have no NaN here).
        dist = nan_euclidean_distances(query, train_features)
        neighbours = np.argpartition(dist, k - 1, axis=1)[:, :k]
        weights = np.zeros_like(dist)
        np.put_along_axis(weights, neighbours, 1.0 / k, axis=1)
        return weights @ train_target


@doc_params(baseline_data=baseline_data)
class TEEBoT(_BaseImputation):
    """Predict target-tissue expression by linear regression on principal components of source tissues.

    TEEBoT (Basu et al., 2021) predicts tissue expression from whole-blood transcriptomes: for each
    (source tissues, target tissue) pair, the concatenated source expression of the training donors observed
    in every source and in the target is centred and reduced with PCA; the components, together with
    optional covariates, are mapped to every target gene by ordinary least squares. Used as a baseline in
    :cite:p:`Vinas2023`.

    Parameters
    ----------
    {baseline_data}
    n_components
        Number of principal components; capped at ``min(n_training_donors - 1, n_source_genes)`` (logged).
    covariate_keys
        Columns of ``mdata.obs`` appended to the components (numeric as-is, categorical one-hot encoded).
    seed
        Random state of the PCA solver.

    Examples
    --------
    >>> teebot = hyfa.tl.TEEBoT(mdata, layer="normalized", n_components=30).fit(train_donors)
    >>> lung = teebot.get_imputed_expression(target_tissues="Lung", source_tissues="Whole_Blood", donors=test)
    """

    _requires_sources = True

    def __init__(
        self,
        mdata: MuData,
        layer: str | None = None,
        gene_mask_key: str | None = None,
        n_components: int = 30,
        covariate_keys: Sequence[str] | None = None,
        seed: int = 0,
    ):
        super().__init__(mdata, layer=layer, gene_mask_key=gene_mask_key)
        if n_components < 1:
            raise ValueError(f"`n_components` must be >= 1, got {n_components}.")
        self.n_components = int(n_components)
        self.covariate_keys = _as_list(covariate_keys) or []
        self.seed = seed

    def _predict(self, mdata: MuData, target: str, sources: list[str], donors: list[str]) -> np.ndarray:
        def fit() -> tuple[PCA, LinearRegression, dict]:
            train = self._training_donors([*sources, target])
            X = np.hstack([self._matrix(self.mdata, s, train) for s in sources])
            n_comp = min(self.n_components, len(train) - 1, X.shape[1])
            if n_comp < 1:
                raise ValueError(
                    f"TEEBoT needs at least 2 training donors with {sources} and {target!r}; got {len(train)}."
                )
            if n_comp < self.n_components:
                logger.warning(
                    "TEEBoT: %d training donors and %d source features for %s -> %r; using n_components=%d "
                    "instead of %d.",
                    len(train),
                    X.shape[1],
                    sources,
                    target,
                    n_comp,
                    self.n_components,
                )
            pca = PCA(n_components=n_comp, random_state=self.seed).fit(X)  # PCA centres X
            covs, categories = _covariate_matrix(self.mdata, train, self.covariate_keys)
            Z = np.hstack([pca.transform(X), covs])
            reg = LinearRegression().fit(Z, self._matrix(self.mdata, target, train))
            return pca, reg, categories

        pca, reg, categories = self._cached(sources, target, fit)
        X = np.hstack([self._matrix(mdata, s, donors) for s in sources])
        covs, _ = _covariate_matrix(mdata, donors, self.covariate_keys, categories)
        return reg.predict(np.hstack([pca.transform(X), covs]))
