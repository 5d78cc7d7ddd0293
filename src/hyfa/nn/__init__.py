"""Neural-network building blocks of HYFA :cite:p:`Vinas2023`."""

from ._decoders import GaussianDecoder
from ._encoder import MetageneEncoder
from ._hyperedge_predictor import HyperedgePredictor
from ._hypergraph_conv import HypergraphAttentionConv, segment_softmax
from ._mlp import MLP, FactorizedInput, hidden_block

__all__ = [
    "FactorizedInput",
    "GaussianDecoder",
    "HyperedgePredictor",
    "HypergraphAttentionConv",
    "MLP",
    "MetageneEncoder",
    "hidden_block",
    "segment_softmax",
]
