"""Test helpers shared across test files (importable thanks to ``pythonpath = ["tests"]``)."""

import anndata as ad
import mudata as md
import numpy as np

#: A small architecture so that model tests train in seconds.
TINY = {
    "n_metagenes": 4,
    "n_factors": 8,
    "n_donor_latent": 16,
    "n_tissue_latent": 8,
    "n_metagene_latent": 8,
    "n_heads": 2,
    "n_head_dim": 8,
    "n_hidden_decoder": 32,
}


def make_unpaired_mudata(n_donors=40, n_tissues=4, n_genes=6, seed=0, layer=None):
    """Return (mdata, table): tissues hold random donor subsets in shuffled order, genes in shuffled order.

    ``table[(donor, tissue)]`` is the expression vector in the order of ``genes``; values encode
    donor, tissue and gene so that any misalignment is visible.
    """
    rng = np.random.default_rng(seed)
    donors = [f"donor_{i:03d}" for i in range(n_donors)]
    genes = [f"gene_{j}" for j in range(n_genes)]
    table, mods = {}, {}
    for t in range(n_tissues):
        present = rng.random(n_donors) < 0.5
        present[rng.integers(n_donors)] = True
        rows = rng.permutation(np.flatnonzero(present))
        gene_order = rng.permutation(n_genes)
        values = np.empty((len(rows), n_genes), np.float32)
        for r, i in enumerate(rows):
            vec = (1000 * i + 10 * t + np.arange(n_genes)).astype(np.float32) / 1000
            table[(donors[i], f"tissue_{t}")] = vec
            values[r] = vec[gene_order]
        adata = ad.AnnData(values if layer is None else rng.normal(size=values.shape).astype(np.float32))
        if layer is not None:
            adata.layers[layer] = values
        adata.obs_names = [donors[i] for i in rows]
        adata.var_names = [genes[j] for j in gene_order]
        mods[f"tissue_{t}"] = adata
    mdata = md.MuData(mods)
    return mdata, table, genes
