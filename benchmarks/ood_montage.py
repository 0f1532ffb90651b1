"""Montage of one scene, clean and under each OOD perturbation, for eyeballing them.

    python benchmarks/ood_montage.py --env robosuite/Lift --severity 0.5 --out benchmarks/results/ood_montage.png
    python benchmarks/ood_montage.py --env libero/libero_spatial/0 --seed 100000 --image-size 128 \
        --specs clean,lighting,distractors,camera,object_color,table,noise,robot_init,layout,lighting+distractors \
        --out benchmarks/results/ood_montage_libero.png

    python benchmarks/ood_montage.py --env libero/libero_spatial/0 --seed 100000 --image-size 128 \
        --specs clean,robot_init,robot_init@1,layout,layout@1 --columns 5 \
        --out benchmarks/results/ood_montage_libero_robot_init_layout.png

One reset seed for every tile, so the tiles differ only by the perturbation. Each tile is
labelled with its spec; a spec ending in ``@s`` (``layout@1``) is drawn at severity s instead
of ``--severity``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from envs import ood

LABEL_HEIGHT_PX = 14


def tile(env_name: str, spec: str, severity: float, seed: int, camera: str, image_size: int) -> np.ndarray:
    """The ``camera`` frame ``[H + label, W, 3]`` after a seeded reset under ``spec`` (``name@s``:
    at severity s), labelled."""
    perturbations, _, own_severity = spec.partition("@")
    if own_severity:
        severity = float(own_severity)
    env = ood.make(env_name, perturbations, severity=severity, cameras=[camera], image_size=image_size)
    try:
        obs, _ = env.reset(seed=seed)
    finally:
        env.close()
    canvas = Image.new("RGB", (image_size, image_size + LABEL_HEIGHT_PX), "white")
    canvas.paste(Image.fromarray(obs["images"][camera]), (0, LABEL_HEIGHT_PX))
    ImageDraw.Draw(canvas).text((2, 1), spec or "clean", fill="black")
    return np.asarray(canvas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="robosuite/Lift")
    parser.add_argument("--severity", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--camera", default="agentview")
    parser.add_argument("--image-size", type=int, default=160, help="tile side, pixels")
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ood_montage.png"))
    parser.add_argument(
        "--specs", default="", help="comma list of tiles (default: clean, every perturbation, lighting+distractors)"
    )
    args = parser.parse_args()

    specs = args.specs.split(",") if args.specs else ["clean", *ood.names(), "lighting+distractors"]
    tiles = [tile(args.env, spec, args.severity, args.seed, args.camera, args.image_size) for spec in specs]
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % args.columns)
    rows = [np.concatenate(tiles[i : i + args.columns], axis=1) for i in range(0, len(tiles), args.columns)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    print(f"{args.env} {args.camera}, severity {args.severity}, seed {args.seed}: {', '.join(specs)} -> {args.out}")


if __name__ == "__main__":
    main()
