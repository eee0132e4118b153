"""Built-in training methods."""

from ebmbench import hookimpl

from .adversarial import AdversarialFlow
from .contrastive_divergence import ContrastiveDivergence, PersistentContrastiveDivergence
from .noise_contrastive import FlowContrastiveEstimation, NoiseContrastiveEstimation
from .score_matching import DenoisingScoreMatching, ExactScoreMatching
from .sliced_score_matching import SlicedScoreMatching, SlicedScoreMatchingVR

__all__ = [
    "AdversarialFlow",
    "ContrastiveDivergence",
    "DenoisingScoreMatching",
    "ExactScoreMatching",
    "FlowContrastiveEstimation",
    "NoiseContrastiveEstimation",
    "PersistentContrastiveDivergence",
    "SlicedScoreMatching",
    "SlicedScoreMatchingVR",
]


@hookimpl
def ebmbench_register_methods(register):
    for cls in (
        ContrastiveDivergence,
        PersistentContrastiveDivergence,
        ExactScoreMatching,
        DenoisingScoreMatching,
        SlicedScoreMatching,
        SlicedScoreMatchingVR,
        NoiseContrastiveEstimation,
        FlowContrastiveEstimation,
        AdversarialFlow,
    ):
        register(cls)
