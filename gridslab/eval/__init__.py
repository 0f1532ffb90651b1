"""Evaluation, in the order it runs: ``checkpoint`` (load a policy safely), ``workers`` (env
worker processes, a whole chunk per call), ``execution`` (what is executed of each chunk),
``rollout`` (seeded episodes on the workers, one record each), ``shard`` (episodes split over
ranks), ``runner`` (conditions -> rollouts -> results files, what ``evaluate.py`` runs),
``summary`` (success tables with Wilson CIs)."""
