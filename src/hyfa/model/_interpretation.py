"""Metagene loadings: what each metagene of the encoder reads from the genes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["InterpretationMixin"]

_SUMMARIES = ("norm", "svd")


class InterpretationMixin:
    """Adds :meth:`get_metagene_loadings` to :class:`~hyfa.HYFA`."""

    def get_metagene_loadings(
        self, metagenes: int | Sequence[int] | None = None, summary: str = "norm"
    ) -> pd.DataFrame:
        r"""Return the metagene loadings, genes x metagenes, read from the metagene encoder.

        The encoder maps a sample's expression :math:`x` (the model's input: the registered layer, or
        ``log1p`` of scaled counts for count likelihoods) to ``n_factors`` features per metagene,
        :math:`e_j = \mathrm{ReLU}(W_j x + b_j)` with :math:`W_j` of shape ``(n_factors, n_genes)``
        (equation (1) of :cite:p:`Vinas2023`). The loading of gene :math:`g` on metagene :math:`j`
        summarizes the column :math:`W_j[:, g]`, i.e. how strongly the metagene's features read gene
        :math:`g`:

        - ``summary="norm"``: its Euclidean norm :math:`\lVert W_j[:, g] \rVert_2`, non-negative and
          independent of the factors' rotation. Rank genes by it to ask which genes drive a metagene.
        - ``summary="svd"``: the gene's coordinate on the first principal direction of :math:`W_j`,
          :math:`s_1 v_1[g]` from the singular value decomposition :math:`W_j = \sum_k s_k u_k v_k^\top`.
          Signed (genes read with opposite signs get opposite signs); the sign of each metagene is fixed
          so that its largest absolute loading is positive.

        The encoder is shared by all tissues, so the loadings are the same in every tissue: what
        differs between tissues is how the tissue embeddings combine the metagenes in message passing.
        Loadings are in units of the encoder input, so genes with a wider input range weigh more.

        Parameters
        ----------
        metagenes
            Metagene positions (``0`` to ``n_metagenes - 1``) to return; ``None`` returns all.
        summary
            ``"norm"`` or ``"svd"``, see above.

        Returns
        -------
        DataFrame indexed by :attr:`genes` with one column per metagene, ``"metagene_0"``, ... Ready for
        :func:`hyfa.tl.metagene_enrichment`.

        Examples
        --------
        >>> loadings = model.get_metagene_loadings()
        >>> loadings["metagene_0"].nlargest(10)
        """
        if summary not in _SUMMARIES:
            raise ValueError(f"summary must be one of {_SUMMARIES}, got {summary!r}.")
        encoder = self.module.encoder
        n_metagenes, n_factors = encoder.n_metagenes, encoder.n_factors
        weight = encoder.linear.weight.detach().float().cpu().numpy().astype(np.float64)
        weight = weight.reshape(n_metagenes, n_factors, -1)
        if metagenes is None:
            chosen = list(range(n_metagenes))
        else:
            chosen = [metagenes] if isinstance(metagenes, int | np.integer) else list(metagenes)
            bad = [m for m in chosen if not isinstance(m, int | np.integer) or not 0 <= m < n_metagenes]
            if bad or not chosen:
                raise ValueError(f"metagenes must be positions in 0..{n_metagenes - 1}, got {metagenes!r}.")
        columns = []
        for j in chosen:
            w = weight[j]
            if summary == "norm":
                columns.append(np.linalg.norm(w, axis=0))
            else:
                _, s, vt = np.linalg.svd(w, full_matrices=False)
                loading = s[0] * vt[0]
                if loading[np.argmax(np.abs(loading))] < 0:
                    loading = -loading
                columns.append(loading)
        return pd.DataFrame(
            np.column_stack(columns),
            index=pd.Index(list(self.genes), name="gene"),
            columns=[f"metagene_{j}" for j in chosen],
        )
