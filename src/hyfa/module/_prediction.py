"""Prediction with a trained :class:`~hyfa.module.HYFAModule`: donor embeddings of many source sets, target distributions."""

from __future__ import annotations

import torch

from hyfa.nn import count_distribution, count_variance, predicted_library


class PredictionMixin:
    """:meth:`embed_source_sets` and :meth:`predict` of :class:`~hyfa.module.HYFAModule` (inference mode, no gradients)."""

    @torch.inference_mode()
    def embed_source_sets(
        self,
        x: torch.Tensor,
        donor_row: torch.Tensor,
        source_mask: torch.Tensor,
        cat_covs: torch.Tensor | None = None,
        cont_covs: torch.Tensor | None = None,
        max_sources: int = 2048,
    ) -> torch.Tensor:
        """Return donor embeddings for many source sets, encoding each source sample once.

        Row ``p`` of the output is donor ``donor_row[p]`` embedded by message passing over its
        tissues ``source_mask[p]``, as :meth:`inference` would. Every (donor, tissue) sample that
        any set uses goes through the metagene encoder once, and (in eval mode, without
        normalization layers) through the first graph layer's message MLP once; the rest of the
        message passing runs once per set.

        Parameters
        ----------
        x
            ``(n_donors, n_tissues * n_genes)`` stacked expression.
        donor_row
            ``(n_sets,)`` donor (row of ``x``) of each source set.
        source_mask
            Boolean ``(n_sets, n_tissues)`` source tissues of each set.
        cat_covs, cont_covs
            Registered donor covariates, rows as ``x``.
        max_sources
            Source samples per message-passing chunk (bounds memory).
        """
        used = torch.zeros(x.shape[0], self.n_tissues, dtype=torch.int32, device=x.device)
        used.index_add_(0, donor_row, source_mask.int())
        sample_donor, sample_tissue = (used > 0).nonzero(as_tuple=True)
        sample_attr = self.encode(x, sample_donor, sample_tissue)
        lookup = torch.full(used.shape, -1, dtype=torch.long, device=x.device)
        lookup[sample_donor, sample_tissue] = torch.arange(len(sample_donor), device=x.device)
        h0 = self.initial_donor(x.shape[0], cat_covs, cont_covs)
        first, *rest = self.graph_layers
        nodes = (self.tissue_embedding, self.metagene_embedding)
        # the first layer sees every set of a donor with the same donor embedding: its hidden units
        # are computed once per sample and only pooled per set
        shared = first.shares_sample_messages
        if shared:
            messages = first.sample_messages(h0, *nodes, sample_attr, sample_donor, sample_tissue)
        out = torch.empty(len(donor_row), h0.shape[1], device=x.device)
        counts = source_mask.sum(dim=1).cpu()
        start = 0
        while start < len(donor_row):
            stop, n_sources = start, 0
            while stop < len(donor_row) and (stop == start or n_sources + counts[stop] <= max_sources):
                n_sources += int(counts[stop])
                stop += 1
            set_row, edge_tissue = source_mask[start:stop].nonzero(as_tuple=True)
            edge_sample = lookup[donor_row[start:stop][set_row], edge_tissue]
            h = h0[donor_row[start:stop]]
            if shared:
                h = first.forward_sample_messages(h, *nodes, messages, sample_tissue, set_row, edge_sample)
            else:
                h = first(h, *nodes, sample_attr[edge_sample], set_row, edge_tissue)
            for layer in rest:
                h = layer(h, *nodes, sample_attr[edge_sample], set_row, edge_tissue)
            out[start:stop] = h
            start = stop
        return out

    @torch.inference_mode()
    def predict(
        self,
        donor: torch.Tensor,
        tissue_index: torch.Tensor,
        library: torch.Tensor | None = None,
        n_samples: int = 0,
        gene_offset: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return the predictive mean, sd (and library sizes, draws) of target (donor, tissue) pairs.

        Parameters
        ----------
        donor
            ``(n_targets, n_donor_latent)`` donor embeddings.
        tissue_index
            ``(n_targets,)`` target tissues.
        library
            Count likelihoods: ``(n_targets,)`` library sizes; ``None`` predicts them (the median of
            the log-normal library model, or a draw from it per sample).
        n_samples
            Draws from the predictive distribution; ``0`` for none.
        gene_offset
            The targets' :meth:`gene_offset` (models with ``gene_skip``).

        Returns
        -------
        ``"mean"`` and ``"sd"`` ``(n_targets, n_genes)`` (for counts, given the library size);
        count likelihoods add ``"library"`` ``(n_targets,)``; with ``n_samples``, ``"samples"``
        ``(n_samples, n_targets, n_genes)``.
        """
        out = self.generative(donor, tissue_index, library=library, gene_offset=gene_offset)
        px = out["px"]
        result = {"mean": px.mean}
        if not self.counts:
            result["sd"] = px.stddev
            if n_samples:
                result["samples"] = px.sample((n_samples,))
            return result
        result["sd"] = count_variance(px).sqrt()
        result["library"] = library if library is not None else predicted_library(out["log_library"])
        if n_samples and library is not None:
            result["samples"] = px.sample((n_samples,))
        elif n_samples:  # each draw with its own library from the log-normal
            zi_logits = getattr(px, "zi_logits", None)
            result["samples"] = torch.stack(
                [
                    count_distribution(
                        out["proportions"], px.theta, zi_logits, torch.exp(out["log_library"].sample())
                    ).sample()
                    for _ in range(n_samples)
                ]
            )
        return result
