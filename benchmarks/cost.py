"""Cost of each token compressor: FLOPs per component, parameters, CPU latency.

For every compressor (identity, grids, pool, random, topk, tokenlearner) and K in
{1, 4, 16, 64}, one policy forward is counted with ``torch.utils.flop_counter`` (a
multiply-add counts 2) and split by component (``gridslab.policy.flops.flops_by_component``):
vision before the compressor, the compressor itself, vision after it, language, backbone,
head. Latency is the median of ``--repeats`` forwards after ``--warmup`` untimed ones, at a
fixed thread count, all in one process so ratios are comparable. Two model sizes:

* ``small``: the default VLA (two 84 px cameras, 7x7 patches, width 128);
* ``pi0``: a pi0-shaped VLA with random weights (two 224 px cameras, 16x16 patches of
  14 px, vision width 1024 x 4 blocks compressed after the encoder as in the GridS
  reference, backbone width 2048 x 4 blocks, a 50-action chunk);
* ``siglip_qwen``: the ``policy=siglip_qwen`` preset at its real shapes with random weights
  (SigLIP-Base/16 at 224 px per camera + Qwen2.5-0.5B), identity and GridS only.
Batch-32 latency is skipped for the large models on CPU (one forward takes seconds);
FLOPs do not depend on the device.

* ``pi0_flow``: the ``policy=pi0`` preset (flow head, Gemma-300M-shaped action expert, 10
  Euler steps) with three 224 px cameras and a 32-token instruction, as the GridS paper's pi0
  table counts a policy call; built and counted on the meta device (no weights, no latency),
  identity and GridS K=16 / K=4 only, and set beside the paper's figures. The "one layer"
  columns count each layer stack once (vision blocks / 27, LM / 18, expert / (18 x 10 steps))
  and the patch embeddings in full: what XLA's ``cost_analysis`` reports for openpi's
  ``nn.scan``-ned layers and denoising ``while_loop``, whose bodies it counts once (our reading
  of the paper's numbers); "as the paper counts" adds openpi's SigLIP head, a Dense from 1152
  to the LM's 2048 on every patch before GridS (ours projects the K sampled tokens only).
* ``pi0_tower``: the same ``policy=pi0`` call with GridS inside the SigLIP tower
  (``policy.vision.tower_compress_after`` L = 0, 9, 18, 27; 27 = the whole tower, the paper's
  placement): blocks 1..L on the 256 patches, blocks L+1..27 and the final norm on the K
  sampled tokens; GridS K=16 / K=4, meta device, FLOPs only.

A K the compressor cannot produce (more than the patch grid holds) is listed as n/a.
Writes benchmarks/results/cost_<model>.{md,csv} and updates those models in cost.json.

    python benchmarks/cost.py [--models small,pi0,siglip_qwen,pi0_flow,pi0_tower] [--threads 2] [--repeats 20]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from envs.hdf5_format import package_versions
from gridslab.config import load_config, to_plain
from gridslab.errors import UserError
from gridslab.policy.factory import build_policy
from gridslab.policy.flops import COMPONENTS, build_on_meta, count_flops, flops_by_component

RESULTS = Path(__file__).parent / "results"
COMPRESSORS = ("identity", "grids", "pool", "random", "topk", "tokenlearner")
KS = (1, 4, 16, 64)
ALL = {name: (KS[:1] if name == "identity" else KS) for name in COMPRESSORS}
MODELS = {
    "small": {"overrides": [], "batches": (1, 32), "compressors": ALL},
    "pi0": {
        "overrides": [
            "env.image_size=224",
            "policy.vision.image_size=224",
            "policy.vision.patch_size=14",
            "policy.vision.stem=patchify",
            "policy.vision.dim=1024",
            "policy.vision.depth=4",
            "policy.vision.heads=16",
            "policy.vision.mlp_ratio=4",
            "policy.vision.compress_after=4",
            "policy.language.dim=1024",
            "policy.language.heads=16",
            "policy.backbone.dim=2048",
            "policy.backbone.depth=4",
            "policy.backbone.heads=16",
            "policy.backbone.mlp_ratio=4",
            "policy.chunk=50",
        ],
        "batches": (1,),
        "compressors": ALL,
    },
    "pi0_flow": {
        "overrides": ["policy=pi0", "env.image_size=224", "env.cameras=[agentview,robot0_eye_in_hand,wrist]"],
        "batches": (),
        "compressors": {"identity": (1,), "grids": (16, 4)},
        "meta": True,
        "paper": True,
    },
    "pi0_tower": {
        "overrides": ["policy=pi0", "env.image_size=224", "env.cameras=[agentview,robot0_eye_in_hand,wrist]"],
        "batches": (),
        "compressors": {"grids": (16, 4)},
        "tower_after": (0, 9, 18, 27),
        "meta": True,
    },
    "siglip_qwen": {
        "overrides": ["policy=siglip_qwen", "env.image_size=224"],
        "batches": (1,),
        "compressors": {"identity": (1,), "grids": (4, 16)},
    },
}


def latency_ms(policy, batch: dict, warmup: int, repeats: int) -> float:
    """Median wall-clock milliseconds of ``policy(batch)`` over ``repeats`` timed runs."""
    with torch.no_grad():
        for _ in range(warmup):
            policy(batch)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            policy(batch)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


PAPER_PI0 = {"identity": 216.01, "grids16": 51.65, "grids4": 43.61}  # GridS paper, pi0 on LIBERO, GFLOPs


def embedding_flops(policy) -> int:
    """FLOPs of the vision towers' patch (and position) embeddings, all cameras, batch 1:
    outside the scanned layer stack in openpi, so counted in full there."""
    total = 0
    for encoder in policy.vision.values():
        parameter = next(encoder.parameters())
        pixels = torch.zeros(1, 3, encoder.image_size, encoder.image_size, device=parameter.device, dtype=parameter.dtype)
        kwargs = {"interpolate_pos_encoding": True} if encoder.interpolate else {}
        embeddings = encoder.get_submodule(encoder.embeddings_path)
        total += count_flops(partial(embeddings, pixels, **kwargs), depth=0)["total"]
    return total


def openpi_head_flops(policy) -> int:
    """FLOPs of openpi's SigLIP output head (``num_classes`` = the LM width, a Dense on every
    patch of every camera, before GridS samples); our tower projects only the K sampled tokens."""
    lm_width = policy.backbone.model.config.hidden_size
    return sum(2 * encoder.grid_size**2 * encoder.dim * lm_width for encoder in policy.vision.values())


def one_layer_gflops(policy, split: dict) -> dict:
    """GFLOPs counted as XLA's ``cost_analysis`` counts openpi's pi0: each scanned layer stack
    once (vision tower blocks / their number, LM / its layers, action expert / (blocks x Euler
    steps)), what runs outside the stacks (patch embeddings, language, compressor) in full;
    ``paper_convention_total`` adds openpi's SigLIP head on all patches, which its model runs
    and ours does not."""
    vision_layers = next(iter(policy.vision.values())).model.config.num_hidden_layers
    lm_layers = policy.backbone.model.config.num_hidden_layers
    expert = len(policy.head.expert.blocks) * policy.head.steps
    embed = embedding_flops(policy)
    parts = {
        "one_layer_vision": ((split["vision_before"] - embed) / vision_layers + embed) / 1e9,
        "one_layer_backbone": split["backbone"] / lm_layers / 1e9,
        "one_layer_head": split["head"] / expert / 1e9,
    }
    total = sum(parts.values()) + (split["language"] + split["compressor"]) / 1e9
    openpi_head = openpi_head_flops(policy) / 1e9
    return {
        **parts,
        "one_layer_total": total,
        "openpi_head": openpi_head,
        "paper_convention_total": total + openpi_head,
    }


def measure(model: str, compressor: str, k: int, repeats: int, tower_after: int | None = None) -> dict | None:
    """One row, or None when the compressor cannot emit ``k`` tokens on this patch grid;
    ``tower_after``: the pretrained tower's ``tower_compress_after`` (None = the config's)."""
    spec = MODELS[model]
    torch.manual_seed(0)
    placement = [] if tower_after is None else [f"policy.vision.tower_compress_after={tower_after}"]
    try:
        cfg = load_config([*spec["overrides"], f"compressor={compressor}", f"compressor.k={k}", *placement])
        build = partial(build_policy, to_plain(cfg), 9, 7)
        policy = build_on_meta(build) if spec.get("meta") else build().eval()
    except UserError as err:
        if "exceeds the" in str(err) or "does not fit" in str(err):  # K larger than the patch grid holds
            return None
        raise
    instruction = " ".join(["word"] * policy.cfg.language.max_len)  # every instruction slot filled
    split = flops_by_component(policy, policy.example_batch(1, instruction=instruction))
    row = {
        "model": model,
        "compressor": compressor,
        "k": k,
        "tokens_per_image": policy.max_tokens_per_image(),
        **({} if tower_after is None else {"tower_compress_after": tower_after}),
        "params_m": round(sum(p.numel() for p in policy.parameters()) / 1e6, 3),
        **{f"gflops_{part}": split[part] / 1e9 for part in (*COMPONENTS, "total")},
    }
    if spec.get("paper"):
        row.update(one_layer_gflops(policy, split), paper_gflops=PAPER_PI0[compressor + (str(k) if k > 1 else "")])
    for batch_size in spec["batches"]:
        warmup = 3 if model == "small" else 1  # large models: seconds per forward on CPU
        runs = repeats if model == "small" else max(3, repeats // 5)
        row[f"latency_ms_b{batch_size}"] = round(latency_ms(policy, policy.example_batch(batch_size), warmup, runs), 3)
    return row


def write_paper_table(model: str, rows: list[dict]) -> None:
    """The ``pi0_flow`` table: our GFLOPs by component and in the one-layer convention, beside the paper's."""
    with open(RESULTS / f"cost_{model}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "`policy=pi0` with the flow head, one policy call (three 224 px cameras, 32 instruction tokens, "
        "10 Euler steps of a 50-action chunk), GFLOPs counted with torch's FlopCounterMode on the meta device "
        "(multiply-add = 2). One layer: each layer stack counted once, the patch embeddings in full, as XLA "
        "counts openpi's scanned layers (see below); as the paper counts: one layer plus openpi's SigLIP head on "
        "every patch (a Dense to the LM width before GridS, which our model applies to the K sampled tokens only).",
        "",
        "| compressor | K | vision (3 x SigLIP) | LM prefix | action expert (10 steps) | total | "
        "one layer: vision | LM | expert | total | + openpi head | as the paper counts | paper | vs paper |",
        "|" + "---|" * 14,
    ]
    for r in rows:
        k = "all (256)" if r["compressor"] == "identity" else r["k"]
        lines.append(
            f"| {r['compressor']} | {k} | {r['gflops_vision_before']:.1f} | {r['gflops_backbone']:.1f} | "
            f"{r['gflops_head']:.1f} | {r['gflops_total']:.1f} | {r['one_layer_vision']:.2f} | "
            f"{r['one_layer_backbone']:.2f} | {r['one_layer_head']:.2f} | {r['one_layer_total']:.2f} | "
            f"{r['openpi_head']:.2f} | {r['paper_convention_total']:.2f} | "
            f"{r['paper_gflops']:.2f} | {r['paper_convention_total'] / r['paper_gflops'] - 1:+.0%} |"
        )
    (RESULTS / f"cost_{model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def write_tower_table(model: str, rows: list[dict]) -> None:
    """The ``pi0_tower`` table: GFLOPs by component for each K and tower placement L, and the
    total against the same K after the whole tower (L = 27)."""
    with open(RESULTS / f"cost_{model}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    depth = max(r["tower_compress_after"] for r in rows)
    whole = {r["k"]: r["gflops_total"] for r in rows if r["tower_compress_after"] == depth}
    lines = [
        "`policy=pi0` (flow head), one policy call as in the table above (three 224 px cameras, 32 instruction tokens, "
        "10 Euler steps), GridS inside the SigLIP-So400m tower: blocks 1..L on the 256 patches of each camera, "
        f"blocks L+1..{depth} and the final norm on the K sampled tokens (`policy.vision.tower_compress_after=L`; "
        f"L = {depth} is the whole tower, the paper's placement). GFLOPs, FlopCounterMode on the meta device.",
        "",
        "| K | L | vision before GridS (3 cameras) | GridS | vision after GridS | LM prefix | action expert (10 steps) "
        f"| total | vs L = {depth} |",
        "|" + "---|" * 9,
    ]
    for r in sorted(rows, key=lambda r: (-r["k"], r["tower_compress_after"])):
        lines.append(
            f"| {r['k']} | {r['tower_compress_after']} | {r['gflops_vision_before']:.1f} | {r['gflops_compressor']:.3f} | "
            f"{r['gflops_vision_after']:.2f} | {r['gflops_backbone']:.1f} | {r['gflops_head']:.1f} | "
            f"{r['gflops_total']:.1f} | {r['gflops_total'] / whole[r['k']]:.0%} |"
        )
    (RESULTS / f"cost_{model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def write_tables(model: str, rows: list[dict], threads: int) -> None:
    if MODELS[model].get("tower_after"):
        write_tower_table(model, rows)
        return
    if MODELS[model].get("paper"):
        write_paper_table(model, rows)
        return
    base = next(r for r in rows if r["compressor"] == "identity")
    batches = MODELS[model]["batches"]
    with open(RESULTS / f"cost_{model}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    head = (
        "| compressor | K | tokens/image | GFLOPs | vs identity | vision before | compressor | vision after | backbone | "
        "params (M) | " + " | ".join(f"ms b={b}" for b in batches) + " | latency vs identity |"
    )
    lines = [
        f"`{model}` VLA, batch-1 GFLOPs by component (language {base['gflops_language']:.3f} and head "
        f"{base['gflops_head']:.4f} GFLOPs in every row), CPU latency with {threads} threads.",
        "",
        head,
        "|" + "---|" * (11 + len(batches)),
    ]
    for r in rows:
        if r.get("na"):
            lines.append(f"| {r['compressor']} | {r['k']} | n/a (K > patches) |" + " |" * (8 + len(batches)))
            continue
        k = "all" if r["compressor"] == "identity" else r["k"]
        lines.append(
            f"| {r['compressor']} | {k} | {r['tokens_per_image']} | {r['gflops_total']:.3f} | "
            f"{r['gflops_total'] / base['gflops_total']:.0%} | {r['gflops_vision_before']:.3f} | "
            f"{r['gflops_compressor']:.4f} | {r['gflops_vision_after']:.3f} | {r['gflops_backbone']:.3f} | "
            f"{r['params_m']:.2f} | "
            + " | ".join(f"{r[f'latency_ms_b{b}']:.1f}" for b in batches)
            + f" | {r['latency_ms_b1'] / base['latency_ms_b1']:.0%} |"
        )
    (RESULTS / f"cost_{model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="small,pi0,siglip_qwen")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tables-only", action="store_true", help="rewrite the tables from cost.json, measure nothing")
    args = parser.parse_args()
    if args.tables_only:
        stored = json.loads((RESULTS / "cost.json").read_text())
        for model, rows in stored["models"].items():
            write_tables(model, rows, stored["threads"])
        return
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    previous = json.loads((RESULTS / "cost.json").read_text()) if (RESULTS / "cost.json").exists() else {}
    everything = {"threads": args.threads, "versions": package_versions(), "models": previous.get("models", {})}
    for model in args.models.split(","):
        rows = []
        for compressor, ks in MODELS[model]["compressors"].items():
            for k in ks:
                for tower_after in MODELS[model].get("tower_after", (None,)):
                    row = measure(model, compressor, k, args.repeats, tower_after)
                    rows.append(row or {"model": model, "compressor": compressor, "k": k, "na": True})
                    print(json.dumps(rows[-1]), flush=True)
        write_tables(model, rows, args.threads)
        everything["models"][model] = rows
    (RESULTS / "cost.json").write_text(json.dumps(everything, indent=2) + "\n")


if __name__ == "__main__":
    main()
