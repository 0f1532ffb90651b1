"""The paper's claims on one task of tabletop_spatial, at ~15 min a run here instead of ~100.

    python benchmarks/one_task.py                 # train + evaluate what has not landed, then the table
    python benchmarks/one_task.py --report-only   # the table from the committed results alone

The suite's comparison (``benchmarks/quality.py``) costs ~100 min of training per run on this
CPU. One task alone, ``tabletop_spatial/0`` ("pick up the red block between the plate and the
green box and place it on the plate": two identical red blocks, told apart only by where they
stand), learns from its 50 demos in a tenth of
that (README "How many demonstrations tabletop_spatial needs"), so every claim of
``benchmarks/claims.py`` can be read off it in an afternoon, plus one likely reason for the
claim that fails on the suite (where GridS's points land) tested by two variants, seed
variants, and an adaptive budget (issue 20 item 4):

    grids_k4, identity, topk_k4   the claims' three compressors; GridS as the paper's, with the
                                  authors' random init (``compressor.init=random``)
    grids_k16                     K: do more points reach the objects?
    grids_k4_uniform              the init: points that start on the uniform grid
                                  (``compressor.init=uniform``, since these runs the
                                  framework's default) instead of near the centre
    grids_k4_seed1, topk_k4_seed1, identity_seed1
                                  training seed 1: how far one seed's success is from another's
    grids_k4_seed2                seed 2 of GridS K=4, whose seeds 0 and 1 are 0/50 and 47/50
    identity_e40                  full tokens trained 40 epochs: identity fails the task at 20
                                  with its validation L1 still falling; is it under-trained?
    grids_k4_uniform_seed1, grids_k4_uniform_seed2
                                  seeds 1 and 2 of the uniform init: does it rescue seed 0
                                  only, or hold across seeds (a candidate GridS default)?
    identity_e40_seed1            seed 1 of full tokens at 40 epochs
    grids_adaptive_k4_16          GridS at K=16 with an adaptive budget in [4, 16]
                                  (``budget=adaptive``, sensitivity signal): does it reach
                                  grids_k16's success with fewer tokens? Its checkpoint is
                                  also run over the validation frames (``budgets.py``'s
                                  ``validation_k_by_task``): K per frame, action L1 at each
                                  probe K, frames per probe target K, stored with its evaluation
    grids_adaptive_k4_16_at_k16   the adaptive run's checkpoint evaluated at a fixed K=16
                                  (``evaluate.py budget=fixed``): does the policy act well at
                                  K=16 and only the head's choice of K=4 fail it?
    grids_k4_e40, topk_k4_e40, grids_k4_e40_seed1, topk_k4_e40_seed1
                                  the claims' compressors at 40 epochs, the length full tokens
                                  need: the claims at one training length for all three
    grids_k4_uniform_e40, grids_k4_uniform_e40_seed1
                                  the uniform init at 40 epochs: GridS K=4 with the random init
                                  loses half its success under the moved camera, with the
                                  uniform init it kept it at 20 epochs; does it at 40?
    grids_k4_uniform_e40_seed2    seed 2 of it, run after the uniform init became the default
                                  on seeds 0 and 1: the one held-out check of that choice here
    grids_k4_e40_seed2            seed 2 of the random init at 40 epochs: three seeds per init
    grids_adaptive_k4_16_uniform_e40, grids_adaptive_k4_16_uniform_e40_at_k16, grids_k16_uniform_e40
                                  the adaptive budget again at 40 epochs and the default
                                  (uniform) init, its checkpoint at a fixed K=16, and fixed
                                  K=16 trained alike: does adaptive K reach fixed K=16's
                                  success with fewer tokens once the policy has learnt?
    grids_k16_uniform_e40_seed1, grids_adaptive_k4_16_uniform_e40_seed1
                                  seed 1 of fixed K=16 and of the adaptive budget at 40 epochs:
                                  is K=16's lead over the adaptive budget's K=4 more than one
                                  seed's?
    identity_e40_seed2, topk_k4_e40_seed2
                                  seed 2 of full tokens and of top-k at 40 epochs (identity's
                                  seeds 0 and 1 are far apart: 44 and 37 of 50 clean, 37 and
                                  25 under lighting): three seeds of every compressor behind
                                  the 40-epoch claims, as GridS has
    grids_k4_uniform_e40_after0, grids_k4_uniform_e40_after2
                                  the insertion depth: GridS K=4 (uniform init, 40 epochs)
                                  reading the patch grid before the ViT's first block
                                  (``policy.vision.compress_after=0``: each patch's own
                                  features, no attention yet) and after both blocks (2: the
                                  GridS reference's place) instead of after one (the default).
                                  With context from attention a point need not sit on an
                                  object to see it: do points read from local features land
                                  nearer the objects than the uniform grid, as the paper's do?
    grids_k4_uniform_e40_after0_seed1, grids_k4_uniform_e40_after2_seed1
                                  seed 1 of reading before the first block and after both

The claims compare runs of one training length and one GridS init: a table per length (20 and
40 epochs) and init (uniform, random), each pooling every seed of GridS K=4 with that init and
of identity and topk_k4 trained that long (episodes summed, Wilson interval of the pooled rate,
as ``quality.py`` pools a suite's seeds); the K=16 variant and the adaptive budget stay out of
them. The uniform init became the default after these runs showed it keeping the moved camera:
its claims tables are read on the runs that chose it (``grids_k4_uniform_e40_seed2`` aside),
not on held-out ones. Every variant has a row of the per-variant table, with the visual tokens
per image its clean episodes used (mean, min-max over policy calls).

Every variant trains alike, ``python train.py conf=tabletop_spatial env.name=tabletop_spatial/0
data.episodes=50 trainer.max_epochs=20 seed=0 <overrides> output_dir=runs/diag/ts0_<variant>``
(resumed from its last.ckpt when interrupted; a finished one is not trained again), then is
evaluated with ``python evaluate.py output_dir=... --episodes 50 --ood lighting,distractors,camera``
(evaluate.py resumes from its results.jsonl). Each finished evaluation is stored as
``benchmarks/results/one_task/<variant>.eval.json`` (``report.py``'s format: summary.json,
timing.json, training settings), the committed source; a variant with that file is not run
again. The table, ``benchmarks/results/one_task.md`` (README block ``results:one_task``), has
each claim's difference with its 95% MOVER interval and verdict (``claims.task_claims``), and
where each GridS variant's points land against a uniform grid of as many points.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # gridslab and envs from this checkout, installed or not
sys.path.insert(0, str(Path(__file__).parent))

from _runs import training_events  # benchmarks/_runs.py
from budgets import validation_k_by_task  # benchmarks/budgets.py
from claims import CLAIMS, COMPARED, difference_cell, mover, task_claims, term  # benchmarks/claims.py
from quality import COMPRESSORS, CONVERGED, checkpoint_state  # benchmarks/quality.py
from report import store_eval  # benchmarks/report.py

from gridslab.config.run_layout import last_checkpoint
from gridslab.eval.summary import timing_key, wilson_interval

ENV = "tabletop_spatial/0"
TRAINING = ["conf=tabletop_spatial", f"env.name={ENV}", "data.episodes=50", "trainer.max_epochs=20", "seed=0"]
EPOCHS = 20
EPISODES = 50
OOD = ["lighting", "distractors", "camera"]


class Variant(NamedTuple):
    """One run of the table. pooled: the claims' compressor whose seeds it pools into (None: not
    in the claims); train: train.py overrides; evaluate: evaluate.py overrides (a budget swapped
    at evaluation); checkpoint_of: the variant whose trained run it evaluates (None: its own)."""

    pooled: str | None
    train: list[str]
    evaluate: tuple[str, ...] = ()
    checkpoint_of: str | None = None


# GridS's point inits (compressor.init), the framework's default first: quality.py's GridS
# (COMPRESSORS) is the paper's, random init; a uniform-init variant overrides it
INITS = {"uniform": "the uniform init (the default)", "random": "the authors' random init (the paper's GridS)"}
UNIFORM_INIT = "compressor.init=uniform"
ADAPTIVE = "budget=adaptive"  # a variant with this override also stores its validation frames' K
ADAPTIVE_TRAINING = [*COMPRESSORS["grids_k16"], ADAPTIVE, "budget.k_min=4", "budget.k_max=16"]
UNIFORM_E40 = [UNIFORM_INIT, "trainer.max_epochs=40"]
# GridS K=4, uniform init, 40 epochs, reading the ViT's patch grid before its first block / after both
BEFORE_BLOCKS = [*COMPRESSORS["grids_k4"], *UNIFORM_E40, "policy.vision.compress_after=0"]
AFTER_BLOCKS = [*COMPRESSORS["grids_k4"], *UNIFORM_E40, "policy.vision.compress_after=2"]
VARIANTS = {
    "grids_k4": Variant("grids_k4", COMPRESSORS["grids_k4"]),
    "identity": Variant("identity", COMPRESSORS["identity"]),
    "topk_k4": Variant("topk_k4", COMPRESSORS["topk_k4"]),
    "grids_k16": Variant(None, COMPRESSORS["grids_k16"]),
    "grids_k4_uniform": Variant("grids_k4", [*COMPRESSORS["grids_k4"], UNIFORM_INIT]),
    "grids_k4_seed1": Variant("grids_k4", [*COMPRESSORS["grids_k4"], "seed=1"]),
    "topk_k4_seed1": Variant("topk_k4", [*COMPRESSORS["topk_k4"], "seed=1"]),
    "identity_seed1": Variant("identity", [*COMPRESSORS["identity"], "seed=1"]),
    "grids_k4_seed2": Variant("grids_k4", [*COMPRESSORS["grids_k4"], "seed=2"]),
    "identity_e40": Variant("identity", [*COMPRESSORS["identity"], "trainer.max_epochs=40"]),
    "grids_adaptive_k4_16": Variant(None, ADAPTIVE_TRAINING),
    "grids_k4_uniform_seed1": Variant("grids_k4", [*COMPRESSORS["grids_k4"], UNIFORM_INIT, "seed=1"]),
    "grids_k4_uniform_seed2": Variant("grids_k4", [*COMPRESSORS["grids_k4"], UNIFORM_INIT, "seed=2"]),
    "identity_e40_seed1": Variant("identity", [*COMPRESSORS["identity"], "trainer.max_epochs=40", "seed=1"]),
    "grids_adaptive_k4_16_at_k16": Variant(None, ADAPTIVE_TRAINING, ("budget=fixed",), "grids_adaptive_k4_16"),
    "grids_k4_e40": Variant("grids_k4", [*COMPRESSORS["grids_k4"], "trainer.max_epochs=40"]),
    "topk_k4_e40": Variant("topk_k4", [*COMPRESSORS["topk_k4"], "trainer.max_epochs=40"]),
    "grids_k4_e40_seed1": Variant("grids_k4", [*COMPRESSORS["grids_k4"], "trainer.max_epochs=40", "seed=1"]),
    "topk_k4_e40_seed1": Variant("topk_k4", [*COMPRESSORS["topk_k4"], "trainer.max_epochs=40", "seed=1"]),
    "grids_k4_e40_seed2": Variant("grids_k4", [*COMPRESSORS["grids_k4"], "trainer.max_epochs=40", "seed=2"]),
    "grids_k4_uniform_e40": Variant("grids_k4", [*COMPRESSORS["grids_k4"], UNIFORM_INIT, "trainer.max_epochs=40"]),
    "grids_k4_uniform_e40_seed1": Variant(
        "grids_k4", [*COMPRESSORS["grids_k4"], UNIFORM_INIT, "trainer.max_epochs=40", "seed=1"]
    ),
    "grids_k4_uniform_e40_seed2": Variant(
        "grids_k4", [*COMPRESSORS["grids_k4"], UNIFORM_INIT, "trainer.max_epochs=40", "seed=2"]
    ),
    "grids_adaptive_k4_16_uniform_e40": Variant(None, [*ADAPTIVE_TRAINING, *UNIFORM_E40]),
    "grids_adaptive_k4_16_uniform_e40_at_k16": Variant(
        None, [*ADAPTIVE_TRAINING, *UNIFORM_E40], ("budget=fixed",), "grids_adaptive_k4_16_uniform_e40"
    ),
    "grids_k16_uniform_e40": Variant(None, [*COMPRESSORS["grids_k16"], *UNIFORM_E40]),
    "grids_k16_uniform_e40_seed1": Variant(None, [*COMPRESSORS["grids_k16"], *UNIFORM_E40, "seed=1"]),
    "grids_adaptive_k4_16_uniform_e40_seed1": Variant(None, [*ADAPTIVE_TRAINING, *UNIFORM_E40, "seed=1"]),
    "identity_e40_seed2": Variant("identity", [*COMPRESSORS["identity"], "trainer.max_epochs=40", "seed=2"]),
    "topk_k4_e40_seed2": Variant("topk_k4", [*COMPRESSORS["topk_k4"], "trainer.max_epochs=40", "seed=2"]),
    "grids_k4_uniform_e40_after0": Variant(None, BEFORE_BLOCKS),
    "grids_k4_uniform_e40_after0_seed1": Variant(None, [*BEFORE_BLOCKS, "seed=1"]),
    "grids_k4_uniform_e40_after2": Variant(None, AFTER_BLOCKS),
    "grids_k4_uniform_e40_after2_seed1": Variant(None, [*AFTER_BLOCKS, "seed=1"]),
}
# an adaptive budget's variant -> the fixed K=16 variant trained alike (epochs, init, seed)
ADAPTIVE_VS_FIXED = {
    "grids_adaptive_k4_16": "grids_k16",
    "grids_adaptive_k4_16_uniform_e40": "grids_k16_uniform_e40",
    "grids_adaptive_k4_16_uniform_e40_seed1": "grids_k16_uniform_e40_seed1",
}
RESULTS = Path(__file__).parent / "results"
STORED = RESULTS / "one_task"


def override(variant: str, key: str) -> str | None:
    """The value of the variant's last ``key=value`` training override, None when it sets none."""
    found = [o.split("=", 1)[1] for o in VARIANTS[variant].train if o.startswith(f"{key}=")]
    return found[-1] if found else None


def epochs(variant: str) -> int:
    """The epochs the variant trains: ``EPOCHS`` unless its overrides set trainer.max_epochs."""
    found = override(variant, "trainer.max_epochs")
    return int(found) if found else EPOCHS


def run_dir(variant: str) -> Path:
    """The training run the variant evaluates (shared with ``checkpoint_of`` when it names one)."""
    return ROOT / "runs" / "diag" / f"ts0_{VARIANTS[variant].checkpoint_of or variant}"


def stored_path(variant: str) -> Path:
    return STORED / f"{variant}.eval.json"


def run_variant(variant: str) -> None:
    """Train (or resume) and evaluate one variant, then store its evaluation."""
    run = run_dir(variant)
    state = checkpoint_state(run)
    if state is None or state[0] < epochs(variant):
        command = [sys.executable, "train.py", *TRAINING, *VARIANTS[variant].train, f"output_dir={run}", "resume=auto"]
        subprocess.run(command, check=True, cwd=ROOT)
    evaluated = run / "eval" / (variant if VARIANTS[variant].evaluate else "last")
    command = [sys.executable, "evaluate.py", f"output_dir={run}", "--episodes", str(EPISODES), "--ood", ",".join(OOD)]
    subprocess.run([*command, *VARIANTS[variant].evaluate, "--out", str(evaluated)], check=True, cwd=ROOT)
    STORED.mkdir(parents=True, exist_ok=True)
    stored = store_eval(f"one_task/{variant}", evaluated)
    add_training_record(variant)
    print(f"stored {stored.relative_to(ROOT)}; commit it: git add {stored.relative_to(ROOT)}")


def add_training_record(variant: str) -> None:
    """Add to the variant's stored evaluation what its run folder says of the training: the
    validation action L1 per epoch (env units) and the training minutes (``training_events``),
    and for an adaptive budget the K of its validation frames (``validation_k_by_task``)."""
    run, stored = run_dir(variant), stored_path(variant)
    source = json.loads(stored.read_text())
    minutes, curves = training_events(run)
    source.update({"train_minutes": minutes, "val_action_l1": curves["val/action_l1"]})
    if ADAPTIVE in VARIANTS[variant].train:  # the K the checkpoint's own head picks, whatever budget evaluated it
        source["validation_k"] = validation_k_by_task(last_checkpoint(run))
    stored.write_text(json.dumps(source, indent=2, sort_keys=True) + "\n")


def entry(sources: list[dict[str, Any]]) -> dict[str, Any]:
    """Stored evaluations of one compressor's seeds as claims.task_claims reads a compressor's
    entry of quality.json: per condition successes and episodes summed over the seeds, the
    pooled rate and its Wilson interval (one seed: its own)."""
    rows = [row for source in sources for row in source["summary"]["conditions"] if row["task"] == ENV]
    success = {}
    for condition in dict.fromkeys(row["perturbation"] for row in rows):
        found = [row for row in rows if row["perturbation"] == condition]
        successes, episodes = sum(row["successes"] for row in found), sum(row["episodes"] for row in found)
        low, high = (found[0]["ci95_low"], found[0]["ci95_high"]) if len(found) == 1 else wilson_interval(successes, episodes)
        success[condition] = {
            "successes": successes,
            "episodes": episodes,
            "rate": successes / episodes,
            "ci95_low": low,
            "ci95_high": high,
        }
    return {"runs": len(sources), "success": success, "status": "done"}


def clean_row(source: dict[str, Any]) -> dict[str, Any] | None:
    """A stored evaluation's clean summary row of the task, None when it was not evaluated clean."""
    return next((r for r in source["summary"]["conditions"] if r["task"] == ENV and r["perturbation"] == "clean"), None)


def points(source: dict[str, Any]) -> dict[str, Any] | None:
    """One stored evaluation's clean point distances (timing.json's entry), None when not recorded."""
    row = clean_row(source)
    stats = {} if row is None else source["timing"].get(timing_key(ENV, "clean", row["severity"]), {})
    return stats if stats.get("object_to_points") is not None else None


def report() -> str:
    """one_task.md from the stored evaluations: the claims' rows, then the points of every GridS variant."""
    landed = {variant: json.loads(stored_path(variant).read_text()) for variant in VARIANTS if stored_path(variant).exists()}
    lines = [
        f"{ENV}, one task alone: every variant {EPOCHS} epochs on 50 demos and seed 0 unless named, {EPISODES} episodes "
        f"per condition (`python benchmarks/one_task.py`); landed: {', '.join(landed) or 'none'}. The claims compare "
        "runs of one training length and GridS init and pool each compressor's seeds of that length; "
        f"{', '.join(v for v, found in VARIANTS.items() if found.pooled is None)} stay out of them. Difference: "
        "success-rate points with a 95% MOVER interval, positive = on the paper's side (benchmarks/claims.py). The "
        "interval counts episodes, not training runs: where one seed's success is far from another's (the per-variant "
        "table), it understates how uncertain the claim is.",
    ]
    for (length, init), seeds in pooled_by_setting(landed).items():
        lines += claims_lines(length, init, seeds)
    lines += [
        "",
        "Per variant; tokens: visual tokens per image in the clean episodes, mean (min-max over policy calls); val L1: "
        f"validation action L1 (env units) after the last epoch, and its change over the last quarter of the epochs "
        f"(falling by {CONVERGED:.0%} or more there: not converged; - where the run folder was gone when it was recorded); "
        "the last column: each task object's distance to its nearest sampled point, clean episodes, first camera, "
        "image widths, with a uniform grid of as many points in brackets.",
        "",
        "| variant | success clean | lighting | distractors | camera | tokens | val L1 | object -> nearest point (grid) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, source in landed.items():
        found = entry([source])
        cells = [f"{s['successes']}/{s['episodes']}" if (s := found["success"].get(c)) else "-" for c in ["clean", *OOD]]
        clean = points(source)
        where = f"{clean['object_to_points']:.3f} ({clean['grid_object_to_points']:.3f})" if clean else "-"
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {tokens_cell(source)} | {val_l1_cell(source)} | {where} |")
    lines += adaptive_lines(landed)
    for variant, source in landed.items():
        lines += validation_k_lines(variant, source.get("validation_k", {}))
    return "\n".join(lines) + "\n"


def adaptive_lines(landed: dict[str, dict[str, Any]]) -> list[str]:
    """The adaptive budget against fixed K=16 trained alike (``ADAPTIVE_VS_FIXED``, both landed):
    per condition, each one's success, adaptive - fixed in points with a 95% MOVER interval, and
    each one's visual tokens per image in the clean episodes; then, per training length and init
    with two or more seeds of the pair landed, the seeds pooled (episodes summed)."""
    pairs = [(adaptive, fixed) for adaptive, fixed in ADAPTIVE_VS_FIXED.items() if adaptive in landed and fixed in landed]
    if not pairs:
        return []
    lines = [
        "",
        "Adaptive budget vs fixed K=16 trained alike (issue 20 item 4): difference = adaptive - fixed, success-rate "
        "points with a 95% MOVER interval; tokens: visual tokens per image in the clean episodes, mean (min-max).",
        "",
        "| adaptive | fixed K=16 | condition | adaptive success | fixed success | difference | tokens adaptive | tokens fixed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for adaptive, fixed in pairs:
        lines += difference_rows(adaptive, fixed, [landed[adaptive]], [landed[fixed]])
    by_setting: dict[tuple[int, str | None], list[tuple[str, str]]] = {}
    for adaptive, fixed in pairs:
        by_setting.setdefault((epochs(adaptive), grids_init(adaptive)), []).append((adaptive, fixed))
    for (length, init), alike in by_setting.items():
        if len(alike) > 1:
            ours, theirs = [landed[a] for a, _ in alike], [landed[f] for _, f in alike]
            pooled = f"({len(alike)} seeds pooled, {length} epochs, {init} init)"
            lines += difference_rows(f"{alike[0][0]} {pooled}", f"{alike[0][1]} {pooled}", ours, theirs)
    return lines


def difference_rows(adaptive: str, fixed: str, ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[str]:
    """``adaptive_lines``' rows of one comparison: ``ours`` and ``theirs`` the stored evaluations
    (one per seed) of the adaptive budget and of fixed K=16, named ``adaptive`` and ``fixed``."""
    mine, other = entry(ours)["success"], entry(theirs)["success"]
    tokens = " | ".join(
        " / ".join(dict.fromkeys(map(tokens_cell, sources))) for sources in (ours, theirs)
    )  # seeds' distinct cells
    rows = []
    for condition in [c for c in ["clean", *OOD] if c in mine and c in other]:
        a, f = mine[condition], other[condition]
        estimate, low, high = mover([term(1, a), term(-1, f)])
        difference = difference_cell({"difference": estimate, "ci95_low": low, "ci95_high": high})
        rows.append(
            f"| {adaptive} | {fixed} | {condition} | {a['successes']}/{a['episodes']} | {f['successes']}/{f['episodes']} "
            f"| {difference} | {tokens} |"
        )
    return rows


def grids_init(variant: str) -> str | None:
    """GridS's point init the variant trains with (its last ``compressor.init`` override; every
    GridS variant names one), None for the other compressors."""
    return override(variant, "compressor.init")


def pooled_by_setting(landed: dict[str, dict[str, Any]]) -> dict[tuple[int, str], dict[str, list[dict[str, Any]]]]:
    """The landed claims runs, ``{(epochs, GridS init): {compressor: [stored evaluation per seed]}}``,
    in increasing epochs, then ``INITS`` order, then the claims' compressor order: a table per
    training length and GridS init with GridS runs landed, its full-token and top-k runs those of
    its length (they have no init)."""
    by_length: dict[int, list[str]] = {}
    for variant, found in VARIANTS.items():
        if found.pooled and variant in landed:
            by_length.setdefault(epochs(variant), []).append(variant)
    groups = {}
    for length in sorted(by_length):
        for init in INITS:
            chosen = [v for v in by_length[length] if grids_init(v) in (None, init)]
            if not any(grids_init(v) == init for v in chosen):
                continue
            seeds: dict[str, list[dict[str, Any]]] = {c: [] for c in COMPARED}
            for variant in chosen:
                seeds[VARIANTS[variant].pooled].append(landed[variant])
            groups[(length, init)] = {c: sources for c, sources in seeds.items() if sources}
    return groups


def claims_lines(length: int, init: str, seeds: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The claims' rows over the runs of one training length and GridS init (``seeds``:
    ``pooled_by_setting``'s entry)."""
    entries = [{"compressor": c, **entry(sources)} for c, sources in seeds.items()]
    runs = [
        {"compressor": "grids_k4", "status": "done", "points": {"clean": found}}
        for s in seeds.get("grids_k4", [])
        if (found := points(s))
    ]
    pooled = ", ".join(f"{e['compressor']} {e['runs']}" for e in entries)
    lines = ["", f"**At {length} epochs, GridS with {INITS[init]}** (seeds landed: {pooled}):", ""]
    lines += ["| claim | condition | ours | difference | verdict |", "|---|---|---|---|---|"]
    rows = task_claims(ENV, {"ood": OOD}, entries, runs)
    return lines + [
        f"| {CLAIMS[r['claim']]} | {r['condition']} | {r['ours']} | {difference_cell(r)} | {r['verdict']} |" for r in rows
    ]


def tokens_cell(source: dict[str, Any]) -> str:
    """The clean row's visual tokens per image: ``mean (min-max)``, ``-`` when not evaluated clean."""
    row = clean_row(source)
    return "-" if row is None else f"{row['tokens_per_image']:.2f} ({row['tokens_min']:g}-{row['tokens_max']:g})"


def val_l1_cell(source: dict[str, Any]) -> str:
    """``last (change over the last quarter of the epochs)``, ``-`` when no curve was recorded."""
    curve = source.get("val_action_l1") or []
    window = max(1, len(curve) // 4)
    if len(curve) <= window:
        return "-"
    change = curve[-1] / curve[-1 - window] - 1
    return f"{curve[-1]:.4f} ({change:+.1%}{'' if change > -CONVERGED else ', not converged'})"


def by_k(values: dict[str, Any]) -> list[tuple[str, Any]]:
    """A ``{K: value}`` map in increasing K (JSON sorts its keys as text: "16" before "4")."""
    return sorted(values.items(), key=lambda item: float(item[0]))


def validation_k_lines(variant: str, by_task: dict[str, dict[str, Any]]) -> list[str]:
    """An adaptive variant's validation frames (``validation_k_by_task``): per task, K per frame
    and, where the budget probes, the action L1 (normalised) at each probe K and frames per
    probe target K."""
    lines = []
    for task, found in by_task.items():
        counts = ", ".join(f"K={k}: {n}" for k, n in by_k(found["counts"]))
        line = f'{variant}, its budget head on the validation frames of "{task}": K mean {found["mean"]:.2f} ({found["min"]:g}-{found["max"]:g}); frames per K: {counts}'
        if "probe_l1" in found:
            l1 = ", ".join(f"K={k}: {v:.4f}" for k, v in by_k(found["probe_l1"]))
            targets = ", ".join(f"K={k}: {n}" for k, n in by_k(found["probe_target"]))
            line += f"; action L1 at each probe K: {l1}; frames per probe target K: {targets}"
        lines += ["", line + "."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma subset of {', '.join(VARIANTS)}")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the table from the stored evaluations")
    args = parser.parse_args()
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]}; valid: {', '.join(VARIANTS)}")
    if not args.report_only:
        for variant in chosen:
            if stored_path(variant).exists():
                print(f"{variant}: landed as {stored_path(variant).relative_to(ROOT)}, not run again")
                continue
            run_variant(variant)
            (RESULTS / "one_task.md").write_text(report())
    table = report()
    (RESULTS / "one_task.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
