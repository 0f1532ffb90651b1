"""Train a VLA: ``python train.py [conf=NAME] [GROUP=OPTION ...] [key=value ...]``.

With no arguments it runs the embedded default (robosuite Lift, GridS K=4): collects the
demonstrations if they are missing, then trains. See ``gridslab/config/load.py`` for the syntax.
It prints the config in a few lines (the full YAML goes to ``<output_dir>/config.yaml``) and ends
with the paths it wrote and the commands to look at them.
"""

import os

from gridslab.config import load_config, print_config
from gridslab.errors import run_cli
from gridslab.outputs import training_outputs


def main(argv: list[str]) -> int:
    cfg = load_config(argv)
    first_rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0"  # under DDP one process speaks
    if first_rank:
        print_config(cfg, cfg.output_dir)
    from gridslab.train.fit import fit

    result = fit(cfg)
    if first_rank:
        print("\n".join(training_outputs(result)))
    return 0


if __name__ == "__main__":
    run_cli(main)
