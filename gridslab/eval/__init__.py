"""Evaluation, in the order it runs: ``checkpoint`` (load a policy safely), ``rollout``
(seeded episodes on vector envs, one record each), ``runner`` (conditions -> rollouts ->
results files, what ``evaluate.py`` runs), ``summary`` (success tables with Wilson CIs)."""
