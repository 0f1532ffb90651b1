"""The VLA policy, one module a job, in the order data flows through it:

``config`` (typed schema, light) -> ``processor`` (raw observations -> policy batch, and
actions back to env units) -> ``vision`` / ``pretrained`` (patch features; the compressor
from ``gridslab.compress``) -> ``budget`` (K per sample) -> ``language`` -> ``layers`` /
``backbone`` -> ``heads`` (L1 regression; ``flow``: the pi0-style flow-matching action
expert) -> ``vla`` (the whole policy); ``backbones`` registers the vision and LM towers, ``factory`` builds a policy from an experiment config, ``flops`` counts its
cost. This package file imports nothing, so ``gridslab.policy.config`` stays light.
"""
