"""Evaluate a checkpoint online, clean and under OOD perturbations.

    python evaluate.py [--ckpt PATH] [--episodes 50] [--ood lighting,distractors] [key=value ...]

Defaults: the last checkpoint of the run in ``output_dir`` (the default run unless
overridden), clean only. ``--ood`` is a comma list; ``+`` combines perturbations
(``lighting+distractors``). ``key=value`` overrides apply to the checkpoint's config
(e.g. ``env.render_quality=full``; ``budget=fixed`` evaluates a checkpoint trained with a
learned budget at its compressor's K, ``budget=per_task budget.default_k=8`` at K=8). Results go to ``<output_dir>/eval/<checkpoint>/`` (with
``config.yaml``, the resolved config); re-running the same command resumes. It ends with the
paths it wrote and the commands to look at them.
"""

import argparse
from pathlib import Path

from gridslab.errors import run_cli


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="checkpoint path (default: <output_dir>/checkpoints/last.ckpt)")
    parser.add_argument("--episodes", type=int, help="episodes per condition (default eval.episodes)")
    parser.add_argument("--ood", help="comma list of perturbations, '+' combines (default: clean only)")
    parser.add_argument("--severity", type=float, help="perturbation severity in [0, 1]")
    parser.add_argument("--workers", type=int, help="vector-env worker processes (default: CPU cores)")
    parser.add_argument("--video-episodes", type=int, help="MP4s per condition")
    parser.add_argument("--out", help="evaluation directory (default <output_dir>/eval/<checkpoint stem>)")
    return parser.parse_known_args(argv)


RESULT_NEUTRAL = (
    "eval.episodes=",
    "eval.ood=",
    "eval.severity=",
    "eval.workers=",
    "eval.threads=",
    "eval.video_episodes=",
    "output_dir=",
    "conf=",
)


def run_name(stem: str, overrides: list[str]) -> str:
    """Evaluation folder name: the checkpoint stem plus any override that changes episodes."""
    changing = sorted(o for o in overrides if not o.startswith(RESULT_NEUTRAL))
    suffix = "__".join(o.replace("/", "-").replace("=", "-") for o in changing)
    return f"{stem}__{suffix}" if suffix else stem


def main(argv: list[str]) -> int:
    args, overrides = parse(argv)
    from gridslab.config import load_config, print_config, to_yaml
    from gridslab.config.run_layout import CONFIG_FILE, eval_dir, last_checkpoint
    from gridslab.eval.checkpoint import load_policy
    from gridslab.eval.runner import evaluate_policy
    from gridslab.eval.shard import Shard
    from gridslab.outputs import evaluation_outputs

    for flag, key in (
        ("episodes", "eval.episodes"),
        ("ood", "eval.ood"),
        ("severity", "eval.severity"),
        ("workers", "eval.workers"),
        ("video_episodes", "eval.video_episodes"),
    ):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    ckpt = args.ckpt
    if ckpt is None:
        run_cfg = load_config([o for o in overrides if o.startswith(("conf=", "output_dir="))])
        ckpt = str(last_checkpoint(run_cfg.output_dir))
    policy, cfg, _ = load_policy(ckpt, [o for o in overrides if not o.startswith("conf=")])
    out_dir = Path(args.out) if args.out else eval_dir(cfg.output_dir, run_name(Path(ckpt).stem, overrides))
    first_rank = Shard.from_environment().rank == 0  # under torchrun, rank 0 speaks and writes the files
    if first_rank:
        print_config(cfg, out_dir, job="eval")
    evaluate_policy(policy, cfg, out_dir, checkpoint=ckpt)
    if first_rank:
        (out_dir / CONFIG_FILE).write_text(to_yaml(cfg))  # the checkpoint's config with this command's overrides
        print("\n".join(evaluation_outputs(out_dir)))
    return 0


if __name__ == "__main__":
    run_cli(main)
