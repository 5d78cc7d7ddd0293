"""Parameter descriptions shared by several docstrings, filled in with :func:`doc_params`."""

from __future__ import annotations

import inspect


def doc_params(**kwds: str):
    """Return a decorator that fills ``{name}`` placeholders of a docstring with the shared texts ``kwds``.

    The docstring is cleaned (:func:`inspect.cleandoc`) first, so the shared texts are written
    without indentation: parameter names at the margin, descriptions indented by four spaces.
    """

    def decorate(obj):
        obj.__doc__ = inspect.cleandoc(obj.__doc__).format_map(kwds)
        return obj

    return decorate


architecture = """\
n_metagenes
    Metagenes ``M``.
n_factors
    Features per metagene (the attributes of each (donor, tissue, metagene) hyperedge).
n_donor_latent, n_tissue_latent, n_metagene_latent
    Embedding sizes of donor, tissue and metagene nodes.
n_heads, n_head_dim
    Attention heads of the message-passing layers and message features per head.
n_graph_layers
    Message-passing layers (each with its own weights).
n_predictor_layers
    Hidden layers of the target hyperedge MLP.
n_hidden_decoder
    Width of the decoder's hidden layer ``e_hat``.
dropout_rate
    Dropout throughout.
residual_update
    Donor update ``h + phi_h(h, m)`` (default) or the paper's ``phi_h(h, m)``.
encoder_activation
    ``"relu"`` as in the paper, or ``None`` for a linear metagene encoder (the authors' code).
norm
    Normalization inside every MLP: ``None`` (default), ``"batch"`` (the authors'
    implementation) or ``"layer"``. On the bundled GTEx data, ``None`` learned donor-specific
    signal within 25 epochs where layer normalization did not; without batch normalization a
    donor's prediction never depends on the other donors of its minibatch.
gene_skip
    Add a gene-level skip connection (:class:`hyfa.nn.GeneSkip`): each target gene also reads the
    same gene of the donor's source tissues (standardized per tissue and gene, a weighted mean over
    the sources shrunk towards zero when they are few or weakly informative) times a learned
    coefficient per target tissue and gene. It
    carries gene-specific signal, such as a cis-eQTL shared by the tissues, that the metagene
    bottleneck loses. The metagenes then need not carry that signal: to read gene programmes from
    the metagene loadings (:meth:`hyfa.HYFA.get_metagene_loadings`), train with ``gene_skip=False``
    (on simulated programmes the skip hid them from the loadings)."""

likelihood = """\
gene_likelihood
    ``"normal"`` for normalized expression (e.g. :func:`hyfa.pp.normalize_gtex`); ``"nb"``
    (negative binomial) or ``"zinb"`` (zero-inflated negative binomial) for raw counts, with
    the gene proportions, dispersion and a log-normal library size predicted per target
    (the names follow :class:`scvi.model.SCVI`). Counts must be non-negative integers. The
    library size is the total over the *modelled* genes: for a gene panel such as
    :func:`hyfa.data.gtex_acmg59` it is not the sequencing depth."""

pseudo_masks = """\
source_count_exponent
    How many of a donor's ``n`` tissues the pseudo-masks make sources: ``k = 1 + floor((n - 1)
    u ** source_count_exponent)`` with ``u ~ Uniform[0, 1)``. 1 is the paper's ``k ~ Uniform{1, ...,
    n - 1}``, which rarely shows the model a donor with one or a few tissues; the default 3 draws
    ``k = 1`` about 40% of the time for a donor with 18 tissues. On the bundled GTEx data (the
    ``quick`` architecture, 240 epochs, before ``gene_skip``; ``benchmarks/gtex_acmg59.py --source-count-exponent``) it
    raised the mean per-gene Pearson r from whole blood alone from 0.176-0.185 (2 runs) to
    0.204-0.222 (3 runs; TEEBoT: 0.190) and from the four accessible tissues from 0.279-0.284 to
    0.292-0.298, with all other tissues as sources about unchanged (0.324-0.326 vs 0.320-0.332).
validation_seed
    Seed of the fixed source/target split of validation donors (evaluated in eval mode)."""

baseline_data = """\
mdata
    Multi-tissue data; each modality is a tissue (donors x genes), donors matched by name.
layer
    Layer holding the expression to impute (e.g. ``"normalized"``); ``None`` uses ``.X``.
gene_mask_key
    Boolean column of each tissue's ``.var`` selecting the genes to use (the intersection over tissues,
    in the order of the first tissue). ``None`` uses all genes shared by the tissues."""
