"""The compressor registry (a leaf: compressor modules register here, ``__init__`` imports them)."""

from __future__ import annotations

from gridslab.compress.base import Compressor
from gridslab.registry import Registry

COMPRESSORS: Registry[Compressor] = Registry("compressor")
