"""Training: ``module`` (the VLA as a LightningModule: loss, optimiser, logging), ``ema``
(weight averaging for evaluation), ``callbacks`` (online rollouts during training)."""
