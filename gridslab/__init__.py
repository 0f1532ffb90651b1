"""gridslab: token-efficient Vision-Language-Action policies with GridS."""

__version__ = "0.1.0"
