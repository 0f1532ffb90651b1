"""Train a VLA: ``python train.py [conf=NAME] [GROUP=OPTION ...] [key=value ...]``.

With no arguments it runs the embedded default (robosuite Lift, GridS K=4): collects the
demonstrations if they are missing, then trains. See ``gridslab/config.py`` for the syntax.
"""

from gridslab.config import load_config, print_config
from gridslab.errors import run_cli


def main(argv: list[str]) -> int:
    cfg = load_config(argv)
    print_config(cfg)
    from gridslab.train.fit import fit

    result = fit(cfg)
    print(f"best checkpoint: {result['best_checkpoint']}\nTensorBoard:     tensorboard --logdir {result['output_dir']}/tb")
    return 0


if __name__ == "__main__":
    run_cli(main)
