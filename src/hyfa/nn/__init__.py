"""Neural-network building blocks of HYFA :cite:p:`Vinas2023`."""

from ._calibration import TargetCalibration
from ._decoders import CountDecoder, GaussianDecoder, count_distribution, count_variance, predicted_library
from ._encoder import MetageneEncoder
from ._gene_skip import GeneSkip
from ._hyperedge_predictor import HyperedgePredictor
from ._hypergraph_conv import HypergraphAttentionConv
from ._kernels import gaussian_nll
from ._mlp import MLP, FactorizedInput, hidden_block
from ._signature_head import CellTypeSignatureHead

__all__ = [
    "CellTypeSignatureHead",
    "CountDecoder",
    "count_distribution",
    "count_variance",
    "predicted_library",
    "FactorizedInput",
    "GaussianDecoder",
    "GeneSkip",
    "HyperedgePredictor",
    "HypergraphAttentionConv",
    "gaussian_nll",
    "MLP",
    "MetageneEncoder",
    "TargetCalibration",
    "hidden_block",
]
