"""Feed-forward predictors: Backbone (features, depth) + GaussianHead -> Gaussians G0.

    from foresplat.models import Predictor, PredictorConfig
    model = Predictor(PredictorConfig.preset("edge-s"))
"""

from foresplat.models.backbone import (Backbone, BackboneConfig, BackboneOutput, backbone_config_from_dict,
                                       build_backbone, register_backbone, registered_backbones)
from foresplat.models.edge import EDGE_PRESETS, EdgeBackbone, EdgeConfig
from foresplat.models.head import GaussianHead, HeadConfig
from foresplat.models.predictor import (PREDICTOR_PRESETS, PREDICTOR_SCHEMA, Predictor, PredictorConfig,
                                        config_from_checkpoint_meta)

__all__ = ["Backbone", "BackboneConfig", "BackboneOutput", "EDGE_PRESETS", "EdgeBackbone", "EdgeConfig",
           "GaussianHead", "HeadConfig", "PREDICTOR_PRESETS", "PREDICTOR_SCHEMA", "Predictor",
           "PredictorConfig", "backbone_config_from_dict", "build_backbone", "config_from_checkpoint_meta",
           "register_backbone", "registered_backbones"]
