"""The bad-input catalogue: each bad input to train.py, evaluate.py or the collector exits
non-zero with one ``error:`` line (no traceback) and leaves every existing file as it was."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from gridslab.train.fit import fit
from tests.helpers import QUICK_FIT, ROOT, TINY, run_python, tiny_config

TRAIN, EVALUATE, COLLECT = [str(ROOT / "train.py")], [str(ROOT / "evaluate.py")], ["-m", "envs.collect"]

# (name, command, arguments, environment, expected text in the error line); {placeholders} are
# files made by the ``files`` fixture.
CATALOGUE = [
    ("unknown conf", TRAIN, ["conf=robosuite_lfit"], {}, "unknown conf 'robosuite_lfit' (did you mean 'robosuite_lift'?)"),
    ("unknown key", TRAIN, ["trainer.max_epoch=3"], {}, "unknown config key 'trainer.max_epoch' (did you mean max_epochs?)"),
    ("unknown nested key", TRAIN, ["policy.vision.depht=3"], {}, "unknown config key 'policy.vision.depht'"),
    ("wrong type", TRAIN, ["trainer.max_epochs=many"], {}, "wrong type for trainer.max_epochs"),
    ("unknown group option", TRAIN, ["compressor=gridz"], {}, "unknown compressor option 'gridz' (did you mean 'grids'?)"),
    ("unknown compressor name", TRAIN, ["compressor.name=nope"], {}, "unknown compressor 'nope'"),
    ("negative K", TRAIN, ["compressor.k=-2"], {}, "compressor.k must be >= 1, got -2"),
    (
        "K above the patch count",
        TRAIN,
        ["{tiny}", "compressor=topk", "compressor.k=20"],
        {},
        "k=20 exceeds the 16 patches of the 4x4 feature map",
    ),
    ("unparsable override", TRAIN, ["nonsense"], {}, "cannot parse 'nonsense'"),
    (
        "override that would build an object",
        TRAIN,
        ['trainer.accelerator=!!python/object/apply:os.system ["echo hi"]'],
        {},
        "bad config override value: could not determine a constructor",
    ),
    ("bad image/patch sizes", TRAIN, ["policy.vision.patch_size=5"], {}, "must be a multiple of policy.vision.patch_size (5)"),
    ("unknown budget rule", TRAIN, ["budget=adaptive", "budget.rule=mass"], {}, "budget.rule='mass'; valid: head, saliency"),
    (
        "budget out of range",
        TRAIN,
        ["{tiny}", "budget=adaptive", "budget.k_min=40", "budget.k_max=8"],
        {},
        "budget.k_min=40 is out of range; valid: 1..8",
    ),
    (
        "unknown per-task budget task",
        TRAIN,
        ["{tiny}", "budget=per_task", "budget.k_by_task={stack the cubes: 2}"],
        {},
        "budget.k_by_task names unknown task 'stack the cubes'",
    ),
    ("unknown lr scaling", TRAIN, ["{tiny}", "optim.lr_scaling=cube"], {}, "unknown optim.lr_scaling 'cube'"),
    ("unknown env", TRAIN, ["env.name=robosuite/Lfit"], {}, "unknown env 'robosuite/Lfit' (did you mean 'robosuite/Lift'?)"),
    ("missing dataset", TRAIN, ["{tiny_base}", "data.paths=[{missing_h5}]"], {}, "missing dataset"),
    ("empty HDF5", TRAIN, ["{tiny_base}", "data.paths=[{empty_h5}]"], {}, "is not a readable HDF5 file"),
    ("truncated HDF5", TRAIN, ["{tiny_base}", "data.paths=[{truncated_h5}]"], {}, "is not a readable HDF5 file"),
    (
        "HDF5 without demos",
        TRAIN,
        ["{tiny_base}", "data.paths=[{foreign_h5}]"],
        {},
        "is not a demonstration file: no 'data' group",
    ),
    (
        "missing pretrained path",
        TRAIN,
        ["policy.vision.backbone=siglip", "policy.vision.path={missing_dir}"],
        {},
        "is not a local siglip model directory",
    ),
    ("fp16 on CPU", TRAIN, ["{tiny}", "trainer.precision=16-mixed", "trainer.accelerator=cpu"], {}, "needs a CUDA GPU"),
    (
        "unknown vision backbone",
        TRAIN,
        ["policy.vision.backbone=clip"],
        {},
        "policy.vision.backbone='clip'; valid: vit, siglip, dinov2",
    ),
    ("missing resume checkpoint", TRAIN, ["{tiny}", "resume={missing_ckpt}"], {}, "resume checkpoint"),
    ("missing checkpoint", EVALUATE, ["--ckpt", "{missing_ckpt}"], {}, "missing checkpoint"),
    ("corrupt checkpoint", EVALUATE, ["--ckpt", "{corrupt_ckpt}"], {}, "is not a readable checkpoint"),
    ("foreign checkpoint", EVALUATE, ["--ckpt", "{foreign_ckpt}"], {}, "is not a gridslab checkpoint"),
    ("empty checkpoint", EVALUATE, ["--ckpt", "{empty_ckpt}"], {}, "{empty_ckpt} is not a readable checkpoint (empty file)"),
    (
        "empty resume checkpoint",
        TRAIN,
        ["{tiny}", "resume={empty_ckpt}"],
        {},
        "{empty_ckpt} is not a readable checkpoint (empty file)",
    ),
    (
        "truncated checkpoint",
        EVALUATE,
        ["--ckpt", "{truncated_ckpt}"],
        {},
        "{truncated_ckpt} is not a readable checkpoint (RuntimeError: PytorchStreamReader failed",
    ),
    ("text file as checkpoint", EVALUATE, ["--ckpt", "{text_ckpt}"], {}, "{text_ckpt} is not a readable checkpoint ("),
    (
        "plain pickle as checkpoint",
        EVALUATE,
        ["--ckpt", "{pickle_ckpt}"],
        {},
        "{pickle_ckpt} is not a readable checkpoint (UnpicklingError: not a torch file of tensors and plain data)",
    ),
    (
        "torch file holding a list",
        EVALUATE,
        ["--ckpt", "{list_ckpt}"],
        {},
        "{list_ckpt} is not a gridslab checkpoint (no state_dict / hyper_parameters.config)",
    ),
    (
        "state_dict that is not a dict",
        EVALUATE,
        ["--ckpt", "{listed_state_ckpt}"],
        {},
        "{listed_state_ckpt} is not a gridslab checkpoint (state_dict is not a dict of tensors)",
    ),
    (
        "checkpoint without dims",
        EVALUATE,
        ["--ckpt", "{dimless_ckpt}"],
        {},
        "{dimless_ckpt} is not a gridslab checkpoint (hyper_parameters lack proprio_dim, action_dim)",
    ),
    (
        "checkpoint with wrong-shaped weights",
        EVALUATE,
        ["--ckpt", "{reshaped_ckpt}"],
        {},
        "checkpoint {reshaped_ckpt} does not fit the configured policy (another policy shape?): size mismatch for {broken_weight}",
    ),
    (
        "checkpoint missing weights",
        EVALUATE,
        ["--ckpt", "{pruned_ckpt}"],
        {},
        "checkpoint {pruned_ckpt} does not fit the configured policy (another policy shape?): Missing key(s)",
    ),
    ("directory as checkpoint", EVALUATE, ["--ckpt", "{ckpt_dir}"], {}, "checkpoint {ckpt_dir} is a directory"),
    (
        "checkpoint of another policy shape",
        EVALUATE,
        ["--ckpt", "{ckpt}", "policy.backbone.dim=64"],
        {},
        "does not fit the configured policy (another policy shape?)",
    ),
    ("unknown --ood name", EVALUATE, ["--ckpt", "{ckpt}", "--ood", "lighting,fog"], {}, "unknown perturbation 'fog'"),
    ("severity out of range", EVALUATE, ["--ckpt", "{ckpt}", "--ood", "lighting", "--severity", "2"], {}, "severity"),
    ("zero episodes", EVALUATE, ["--ckpt", "{ckpt}", "--episodes", "0"], {}, "eval.episodes=0 must be >= 1"),
    ("unknown eval key", EVALUATE, ["--ckpt", "{ckpt}", "eval.episode=3"], {}, "unknown config key 'eval.episode'"),
    ("unknown env at evaluation", EVALUATE, ["--ckpt", "{ckpt}", "env.name=robosuite/Nope"], {}, "unknown env 'robosuite/Nope'"),
    ("collector: unknown env", COLLECT, ["--env", "robosuite/Lfit"], {}, "unknown env 'robosuite/Lfit'"),
    ("collector: zero episodes", COLLECT, ["--episodes", "0"], {}, "episodes=0 must be >= 1"),
    ("collector: image size", COLLECT, ["--image-size", "0"], {}, "image_size=0 is out of range"),
    (
        "collector: unknown camera",
        COLLECT,
        ["--cameras", "nocam", "--episodes", "1", "--out", "{new_h5}"],
        {},
        "unknown camera 'nocam'",
    ),
    (
        "collector: corrupt output file",
        COLLECT,
        ["--episodes", "1", "--image-size", "32", "--out", "{truncated_h5}"],
        {},
        "{truncated_h5}",
    ),
    (
        "no rendering backend",
        COLLECT,
        ["--episodes", "1", "--out", "{new_h5}"],
        {"MUJOCO_GL": "nonsense"},
        "MUJOCO_GL='nonsense' is not a MuJoCo rendering backend",
    ),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory, lift_demos) -> dict[str, str]:
    """Real files the bad inputs point at: a trained tiny checkpoint, a demo file, and broken ones."""
    root = tmp_path_factory.mktemp("bad_inputs")
    cfg = tiny_config(root, lift_demos, *QUICK_FIT)
    ckpt = fit(cfg)["last_checkpoint"]
    demos = root / "demos.hdf5"
    shutil.copy(lift_demos, demos)
    (root / "empty.hdf5").write_bytes(b"")
    data = demos.read_bytes()
    (root / "truncated.hdf5").write_bytes(data[: len(data) // 2])
    with h5py.File(root / "foreign.hdf5", "w") as foreign:
        foreign.create_dataset("images", data=np.zeros((2, 4)))
    (root / "corrupt.ckpt").write_bytes(os.urandom(4096))
    import pickle

    import torch

    torch.save({"weights": torch.zeros(3)}, root / "foreign.ckpt")
    broken_weight = checkpoint_files(root, Path(ckpt))
    (root / "text.ckpt").write_text("not a checkpoint\n")
    (root / "pickle.ckpt").write_bytes(pickle.dumps({"state_dict": {}}, protocol=4))
    torch.save([1, 2, 3], root / "list.ckpt")
    (root / "checkpoints").mkdir()
    tiny_base = " ".join([*TINY, f"output_dir={tmp_path_factory.mktemp('bad_runs') / 'run'}", "data.episodes=3"])
    return {
        "root": str(root),
        "ckpt": str(ckpt),
        "demos": str(demos),
        "tiny_base": tiny_base,
        "tiny": f"{tiny_base} data.paths=[{demos}]",
        "missing_h5": str(root / "nowhere.hdf5"),
        "empty_h5": str(root / "empty.hdf5"),
        "truncated_h5": str(root / "truncated.hdf5"),
        "foreign_h5": str(root / "foreign.hdf5"),
        "missing_ckpt": str(root / "nowhere.ckpt"),
        "corrupt_ckpt": str(root / "corrupt.ckpt"),
        "foreign_ckpt": str(root / "foreign.ckpt"),
        **{f"{name}_ckpt": str(root / f"{name}.ckpt") for name in BROKEN_CHECKPOINTS},
        "ckpt_dir": str(root / "checkpoints"),
        "broken_weight": broken_weight,
        "new_h5": str(root / "new.hdf5"),
        "missing_dir": str(root / "no_model_here"),
    }


BROKEN_CHECKPOINTS = ("empty", "truncated", "text", "pickle", "list", "listed_state", "dimless", "reshaped", "pruned")


def checkpoint_files(root: Path, ckpt: Path) -> str:
    """Broken variants of the real checkpoint ``ckpt`` in ``root`` (the ones not written inline);
    returns the policy weight the reshaped and pruned ones break (e.g. ``head.proj.weight``)."""
    import torch

    (root / "empty.ckpt").write_bytes(b"")
    data = ckpt.read_bytes()
    (root / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    real = torch.load(ckpt, map_location="cpu", weights_only=True)
    torch.save({**real, "state_dict": list(real["state_dict"].values())}, root / "listed_state.ckpt")
    hparams = {k: v for k, v in real["hyper_parameters"].items() if k not in ("proprio_dim", "action_dim")}
    torch.save({**real, "hyper_parameters": hparams}, root / "dimless.ckpt")
    broken = next(k for k in real["state_dict"] if k.startswith("policy.") and k.endswith(".weight"))[len("policy.") :]
    hit = ("policy." + broken, "ema.module." + broken)  # both copies: evaluation reads the EMA one when there is one
    reshaped = {k: torch.zeros(3, 3) if k in hit else v for k, v in real["state_dict"].items()}
    torch.save({**real, "state_dict": reshaped}, root / "reshaped.ckpt")
    torch.save({**real, "state_dict": {k: v for k, v in real["state_dict"].items() if k not in hit}}, root / "pruned.ckpt")
    return broken


def _fill(text: str, files: dict[str, str]) -> str:
    """``text`` with each ``{name}`` of ``files`` replaced by its value (other braces kept)."""
    for name, value in files.items():
        text = text.replace("{" + name + "}", value)
    return text


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_catalogue_is_large():
    assert len(CATALOGUE) >= 25 and len({name for name, *_ in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize("name, command, arguments, env, expected", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_input_is_one_line_and_touches_no_file(files, tmp_path, name, command, arguments, env, expected):
    words = [
        word
        for argument in arguments
        for word in (_fill(argument, files).split() if argument.startswith("{tiny") else [_fill(argument, files)])
    ]
    before = _digests(Path(files["root"]))
    result = run_python([*command, *words], tmp_path, timeout=300, env=env)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and _fill(expected, files) in errors[0], result.stderr[-2000:]
    assert _digests(Path(files["root"])) == before  # nothing deleted, rewritten or corrupted
    assert not Path(files["new_h5"]).exists()
