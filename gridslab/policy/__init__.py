"""The VLA policy: vision encoders with compressors, instruction encoder, backbone, head.

``VLA(PolicyConfig, compressor_cfg, cameras, proprio_dim, action_dim)`` is the entry
point; ``tokenize`` turns instructions into the ids the batch carries.
"""

from gridslab.policy.config import (BackboneConfig, HeadConfig, LanguageConfig, PolicyConfig, VisionConfig,
                                    as_policy_config)
from gridslab.policy.heads import HEADS
from gridslab.policy.language import tokenize
from gridslab.policy.vla import VLA

__all__ = ["VLA", "PolicyConfig", "VisionConfig", "LanguageConfig", "BackboneConfig", "HeadConfig",
           "as_policy_config", "HEADS", "tokenize"]
