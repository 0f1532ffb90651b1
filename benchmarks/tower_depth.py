"""GridS inside the vision tower: success on the default task (robosuite Lift, GridS K=4) when the
sampler reads the patch grid after block L of a SigLIP tower and the later blocks run on the K
sampled tokens only (``policy.vision.tower_compress_after=L``; L = the tower's depth is the
whole-tower path of the GridS reference).

The tower is tiny and randomly initialised (no pretrained SigLIP is this small): SigLIP-shaped,
4 blocks of width 128 (4 heads, MLP 256), patch 12 at 84 px, so each camera gives the same 7 x 7
patch grid as the default small VLA. It is built once, seeded (torch seed 0), into
runs/tower_depth/tower/ (``save_pretrained``, nothing downloaded) and every run starts from it
and trains it end to end, so the comparison is one of where the sampler sits, not of
pretrained features. The rest is the default small VLA (language encoder, 2-block backbone,
L1 head, 8-step chunks) with ``compressor=grids compressor.init=random compressor.k=4``.

For each (L, seed): train ``python train.py compressor=grids compressor.init=random compressor.k=4
policy.vision.backbone=siglip policy.vision.path=runs/tower_depth/tower
policy.vision.tower_compress_after=L seed=S`` into runs/tower_depth/e<epochs>/L<L>_seed<S>/ (an
unfinished run resumes from its last.ckpt), read the validation action L1 of every epoch from
its TensorBoard events, count the FLOPs of one batch-1 policy call split before / after L
(``gridslab.policy.flops.flops_by_component``), then evaluate last.ckpt online (``evaluate.py``,
clean episodes). Each finished run writes benchmarks/results/tower_depth/e<epochs>/L<L>_seed<S>.json
(paths relative to the repository); a re-run skips runs whose JSON exists. ``--report`` writes
benchmarks/results/tower_depth.md from the JSONs and copies it into README.md's
``results:tower_depth`` block when README has one. ``--out-dir DIR`` puts the tower, runs,
JSONs and table under DIR instead (a scratch study; README untouched).

    python benchmarks/tower_depth.py [--afters 0,2,4] [--seeds 0] [--epochs 15] [--episodes 50] [--out-dir DIR]
    python benchmarks/tower_depth.py --report [--epochs 15] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # gridslab from this checkout, installed or not

from _runs import PAPER_INIT, RESULTS, params_m, publish, relative, success_cell, train, write_result

TOWER = {  # SiglipVisionConfig fields of the tiny tower
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "image_size": 84,
    "patch_size": 12,
}
TOWER_SEED = 0
COMMON = ["compressor=grids", PAPER_INIT, "compressor.k=4", "policy.vision.backbone=siglip"]


@dataclass(frozen=True)
class Layout:
    """Where the study writes: the tower directory, run directories, per-run JSONs, the table,
    and the README block the table goes into (None: leave README alone)."""

    tower: Path
    runs: Path
    results: Path
    table: Path
    readme_block: str | None

    @classmethod
    def at(cls, out_dir: str | None) -> Layout:
        """The repository's layout, or everything under ``out_dir``."""
        if out_dir is None:
            runs = ROOT / "runs" / "tower_depth"
            return cls(runs / "tower", runs, RESULTS / "tower_depth", RESULTS / "tower_depth.md", "tower_depth")
        out = Path(out_dir).resolve()
        return cls(out / "tower", out / "runs", out / "results", out / "tower_depth.md", None)


def run_name(after: int, seed: int) -> str:
    return f"L{after}_seed{seed}"


def build_tower(folder: Path) -> Path:
    """The tiny random SigLIP tower in ``folder`` (config.json + model.safetensors), built once
    with torch seed ``TOWER_SEED`` (the same bytes on every build; each result JSON records their
    sha256); an existing one of other shapes is refused."""
    config = folder / "config.json"
    if config.exists():
        stored = json.loads(config.read_text())
        differ = {key: (stored.get(key), value) for key, value in TOWER.items() if stored.get(key) != value}
        if differ:
            raise SystemExit(f"{relative(folder)} holds another tower ({differ} as stored, wanted); remove it or use --out-dir")
        return folder
    import torch

    from gridslab.policy.pretrained import VISION_FAMILIES, load_model

    torch.manual_seed(TOWER_SEED)
    load_model("siglip", VISION_FAMILIES["siglip"], "", TOWER, "policy.vision").save_pretrained(folder)
    print(f"built the tiny SigLIP tower {TOWER} (torch seed {TOWER_SEED}) into {relative(folder)}")
    return folder


def overrides(tower: Path, after: int, seed: int) -> list[str]:
    return [*COMMON, f"policy.vision.path={relative(tower)}", f"policy.vision.tower_compress_after={after}", f"seed={seed}"]


def cost(run: Path) -> dict:
    """Parameters (millions) and GFLOPs of one batch-1 policy call of the run's last.ckpt, split
    into the tower before L (embeddings + blocks on the full patch grid, all cameras), the
    tower after L (blocks + final norm on the K tokens) and the whole call."""
    import torch

    from gridslab.eval.checkpoint import load_policy
    from gridslab.policy.flops import flops_by_component

    policy, _, _ = load_policy(run / "checkpoints" / "last.ckpt")
    policy.eval()
    with torch.no_grad():
        split = flops_by_component(policy, policy.example_batch(1))
    encoder = next(iter(policy.vision.values()))
    return {
        "tower_depth": encoder.depth,
        "patches_per_image": encoder.grid_size**2,
        "params_m": params_m(policy),
        "gflops_before_l": round(split["vision_before"] / 1e9, 6),
        "gflops_after_l": round(split["vision_after"] / 1e9, 6),
        "gflops_call": round(split["total"] / 1e9, 6),
    }


def measure(after: int, seed: int, epochs: int, episodes: int, layout: Layout) -> Path:
    path = layout.results / f"e{epochs}" / f"{run_name(after, seed)}.json"
    if path.exists():
        print(f"{relative(path)} exists: skipped")
        return path
    tower = build_tower(layout.tower)
    run = train(layout.runs / f"e{epochs}" / run_name(after, seed), overrides(tower, after, seed), epochs)
    weights = hashlib.sha256((tower / "model.safetensors").read_bytes()).hexdigest()
    labels = {"after": after, "seed": seed, "epochs": epochs, "tower": {**TOWER, "seed": TOWER_SEED, "sha256": weights}}
    return write_result(path, labels, overrides(tower, after, seed), run, cost(run), episodes)


def report(epochs: int, layout: Layout) -> str:
    """The markdown table of the ``epochs``-epoch runs' JSONs, into ``layout.table`` (and README's block)."""
    folder = layout.results / f"e{epochs}"
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("L*_seed*.json"))]
    if not runs:
        raise SystemExit(f"no results in {relative(folder)}; run python benchmarks/tower_depth.py --epochs {epochs} first")
    first = runs[0]
    tower = first["tower"]
    lines = [
        f"robosuite/Lift, GridS K=4 sampled after block L of a tiny SigLIP tower ({tower['num_hidden_layers']} blocks, width "
        f"{tower['hidden_size']}, patch {tower['patch_size']} at {tower['image_size']} px = {first['patches_per_image']} "
        f"patches per camera, 2 cameras; randomly initialised with torch seed {tower['seed']} and trained end to end), "
        f"blocks after L on the 4 sampled tokens; the rest is the default small VLA (L1 head). {first['epochs']} epochs "
        "on 100 demos, last.ckpt (EMA weights), code "
        + ", ".join(sorted({r["code"] for r in runs}))
        + ". L = depth: the whole tower before GridS, as in the GridS reference. GFLOPs: one batch-1 policy call "
        "(`gridslab.policy.flops`, multiply-add = 2), tower before L / after L / whole call. Val action L1: mean "
        "|predicted - demo| of the chunk in env units on the validation split. Success: clean episodes from seed 100000 "
        "[Wilson 95% CI]. Train / eval minutes: wall time on a 2-core CPU shared with other jobs (not comparable "
        "across rows).",
        "",
        "| L | seed | params (M) | GFLOPs before L | GFLOPs after L | GFLOPs/call | val action L1, last epoch "
        "| val action L1 by epoch | success clean | train min | eval min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["after"], r["seed"])):
        curve = r["val_action_l1"]
        depth = " (= depth)" if r["after"] == r["tower_depth"] else ""
        lines.append(
            f"| {r['after']}{depth} | {r['seed']} | {r['params_m']:.2f} | {r['gflops_before_l']:.4f} | "
            f"{r['gflops_after_l']:.4f} | {r['gflops_call']:.4f} | {curve[-1]:.4f} | "
            f"{', '.join(f'{value:.4f}' for value in curve)} | {success_cell(r['successes'], r['episodes'])} | "
            f"{r['train_minutes']:.1f} | {r['eval_minutes']:.1f} |"
        )
    table = "\n".join(lines) + "\n"
    publish(table, layout.table, layout.readme_block)
    return table


def integers(text: str, what: str, valid: range) -> list[int]:
    """Comma list of integers in ``valid``; a bad entry is one line naming it and the valid ones."""
    values = []
    for item in text.split(","):
        if not item.strip().lstrip("-").isdigit() or int(item) not in valid:
            raise SystemExit(f"{what} {item!r}; valid: integers {valid.start} .. {valid.stop - 1}, comma-separated")
        values.append(int(item))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    depth = TOWER["num_hidden_layers"]
    parser.add_argument("--afters", default=f"0,{depth // 2},{depth}", help=f"comma list of L in 0 .. {depth}")
    parser.add_argument("--seeds", default="0", help="comma list of training seeds")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs")
    parser.add_argument("--episodes", type=int, default=50, help="online clean episodes per run")
    parser.add_argument("--out-dir", help="scratch folder for the tower, runs, JSONs and table (default: the repository's)")
    parser.add_argument("--report", action="store_true", help="write tower_depth.md (and the README block) from the JSONs")
    args = parser.parse_args()
    layout = Layout.at(args.out_dir)
    if args.report:
        report(args.epochs, layout)
        return
    afters = integers(args.afters, "--afters", range(depth + 1))
    for seed in integers(args.seeds, "--seeds", range(2**31)):
        for after in afters:
            measure(after, seed, args.epochs, args.episodes, layout)


if __name__ == "__main__":
    main()
