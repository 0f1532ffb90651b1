"""Config composition, overrides and one-line errors (train.py's front door)."""

from __future__ import annotations

import pytest

from gridslab.config import load_config, to_yaml
from gridslab.errors import UserError
from tests.helpers import ROOT, run_python


def test_default_composes_all_groups():
    cfg = load_config([])
    assert cfg.experiment == "robosuite_lift"
    assert cfg.env.name == "robosuite/Lift"
    assert cfg.compressor.name == "grids" and cfg.compressor.k == 4
    assert cfg.budget.name == "fixed"
    assert cfg.data.episodes == 100 and cfg.output_dir == "runs/robosuite_lift"
    assert "layer_norm" in cfg.compressor  # registered schema defaults are made explicit


def test_group_option_and_dotlist_overrides():
    cfg = load_config(
        [
            "conf=robosuite_lift",
            "compressor=identity",
            "trainer.max_epochs=20",
            "data.episodes=3",
            "output_dir=/tmp/x",
            "policy.vision.depth=3",
        ]
    )
    assert cfg.compressor.name == "identity"
    assert cfg.trainer.max_epochs == 20 and cfg.data.episodes == 3 and cfg.output_dir == "/tmp/x"
    assert cfg.policy.vision.depth == 3
    cfg = load_config(["compressor.k=16", "compressor.layer_norm=true"])
    assert cfg.compressor.k == 16 and cfg.compressor.layer_norm is True


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config(["compressor.k=8"])
    text = to_yaml(cfg)
    assert "k: 8" in text
    import yaml

    again = load_config([], base=yaml.safe_load(text))
    assert again == cfg


@pytest.mark.parametrize(
    "args, expected",
    [
        (["conf=robosuite_lfit"], "unknown conf 'robosuite_lfit' (did you mean 'robosuite_lift'?)"),
        (["compressor=gridz"], "unknown compressor option 'gridz' (did you mean 'grids'?)"),
        (["trainer.max_epoch=3"], "unknown config key 'trainer.max_epoch' (did you mean max_epochs?)"),
        (["trainer.max_epochs=many"], "wrong type for trainer.max_epochs"),
        (["compressor.kk=3"], "unknown key compressor.kk (did you mean k?)"),
        (["compressor.k=0"], "compressor.k must be >= 1, got 0"),
        (["compressor.k=-2"], "compressor.k must be >= 1, got -2"),
        (["compressor.name=nope"], "unknown compressor 'nope'"),
        (["budget=nope"], "unknown budget option 'nope'"),
        (["nonsense"], "cannot parse 'nonsense'"),
    ],
)
def test_bad_config_is_one_line(args, expected):
    with pytest.raises(UserError) as caught:
        cfg = load_config(args)
        from gridslab.compress import build_compressor

        build_compressor(cfg.compressor, 32)
    message = str(caught.value)
    assert expected in message, message
    assert "\n" not in message


def test_train_cli_prints_one_line_without_traceback(tmp_path):
    result = run_python([str(ROOT / "train.py"), "trainer.max_epoch=3"], tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown config key 'trainer.max_epoch' (did you mean max_epochs?); valid keys of trainer: "
        + ", ".join(load_config([]).trainer.keys())
    ]
    assert "Traceback" not in result.stderr


class _RunsCode:
    """Pickles into a call of os.system: what a malicious checkpoint would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_configs_and_checkpoints_cannot_run_code(tmp_path):
    from gridslab.config.load import _read_yaml
    from gridslab.eval.checkpoint import read_checkpoint

    marker = tmp_path / "ran"
    evil_yaml = tmp_path / "evil.yaml"
    evil_yaml.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(UserError, match="is not valid YAML"):
        _read_yaml(evil_yaml)
    with pytest.raises(UserError):
        load_config([f'compressor.name=!!python/object/apply:os.system ["touch {marker}"]'])
    import torch

    torch.save({"state_dict": {}, "hyper_parameters": {"config": {}}, "payload": _RunsCode(marker)}, tmp_path / "evil.ckpt")
    with pytest.raises(UserError, match="is not a readable checkpoint"):
        read_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()
