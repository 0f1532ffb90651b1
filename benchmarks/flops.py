"""FLOPs and CPU latency of one policy forward, per compressor, for the default small VLA.

FLOPs from ``torch.utils.flop_counter`` (a multiply-add counts 2), per component; latency
is the median of repeated forwards (warm-up excluded) at a fixed thread count.
Writes benchmarks/results/flops.{json,md}.

    python benchmarks/flops.py [--threads 2] [--batch 1,32] [--repeats 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from envs.hdf5_format import package_versions
from gridslab.config import load_config, to_plain
from gridslab.flops import count_flops
from gridslab.module import build_policy

RESULTS = Path(__file__).parent / "results"
CONFIGS = {
    "identity": ["compressor=identity"],
    "grids K=4": ["compressor=grids", "compressor.k=4"],
    "grids K=16": ["compressor=grids", "compressor.k=16"],
    "pool K=4": ["compressor=pool", "compressor.k=4"],
    "topk K=4": ["compressor=topk", "compressor.k=4"],
    "tokenlearner K=4": ["compressor=tokenlearner", "compressor.k=4"],
}


def dummy_batch(policy, cfg, batch: int) -> dict:
    size = cfg.policy.vision.image_size
    generator = torch.Generator().manual_seed(0)
    from gridslab.policy.language import tokenize

    ids, mask = tokenize(["lift the red cube"] * batch, cfg.policy.language.max_len)
    return {
        "images": {c: torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator) for c in cfg.env.cameras},
        "proprio": torch.randn(batch, 9, generator=generator),
        "instruction_ids": ids,
        "instruction_mask": mask,
    }


def latency_ms(policy, batch: dict, repeats: int) -> float:
    with torch.no_grad():
        for _ in range(5):
            policy(batch)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            policy(batch)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", default="1,32")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for label, overrides in CONFIGS.items():
        cfg = load_config(overrides)
        policy = build_policy(to_plain(cfg), 9, 7).eval()
        flops = count_flops(lambda: policy(dummy_batch(policy, cfg, 1)), depth=2)
        row = {"config": label, "gflops": flops["total"] / 1e9, "params_m": sum(p.numel() for p in policy.parameters()) / 1e6,
               "tokens_per_image": policy.max_tokens_per_image(),
               "components_gflops": {k: v / 1e9 for k, v in sorted(flops.items()) if k != "total" and k.count(".") == 1}}
        for batch in (int(b) for b in args.batch.split(",")):
            row[f"latency_ms_b{batch}"] = latency_ms(policy, dummy_batch(policy, cfg, batch), args.repeats)
        rows.append(row)
        print(json.dumps(row))
    base = rows[0]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "flops.json").write_text(json.dumps({"rows": rows, "threads": args.threads, "versions": package_versions()}, indent=2))
    batches = [int(b) for b in args.batch.split(",")]
    lines = ["| config | tokens/image | GFLOPs (b=1) | vs identity | params (M) | " + " | ".join(f"latency b={b} (ms)" for b in batches) + " |",
             "|---|---|---|---|---|" + "---|" * len(batches)]
    for r in rows:
        lines.append(f"| {r['config']} | {r['tokens_per_image']} | {r['gflops']:.3f} | {r['gflops'] / base['gflops']:.0%} | {r['params_m']:.2f} | "
                     + " | ".join(f"{r[f'latency_ms_b{b}']:.1f}" for b in batches) + " |")
    (RESULTS / "flops.md").write_text(f"Default small VLA, 2 cameras at 84 px, CPU, {args.threads} threads.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
