"""Demonstrations -> training batches: ``datamodule`` (HDF5 demos in memory, raw chunks,
train/val split by demo, normalisation statistics) and ``sampling`` (a resumable,
DDP-sharded sample order that depends only on seed and epoch). File formats are read by
the readers next to their writers in ``envs.hdf5_format`` and ``envs.libero_format``."""
