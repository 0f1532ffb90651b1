"""LIBERO's two known MuJoCo-version breakages, checked on the installed MuJoCo.

1. libero_spatial task 5 ("pick up the black bowl on the ramekin ..."): its 50 stored initial
   states hold the bowl above the ramekin; it only comes to rest on it during the reset's
   settling steps. From MuJoCo 3.4.0 (a box-box collision change) the bowl is reported to end
   up tilted on the ramekin's rim or slid off it (lerobot #4390, RLinf #1460, LIBERO #141).
   Per state, after ``LiberoEnv.reset`` (LIBERO's state restore + our 10 settling no-op
   steps): whether LIBERO's own predicate ``On(bowl, ramekin)`` holds, the bowl's tilt (angle
   of its body z axis from vertical, degrees) and its horizontal offset from the ramekin's
   centre (cm).
2. The floor's brightness, reported darker from MuJoCo 3.3.3 (LIBERO #88, PR #140): mean RGB
   (0-255) of the floor's pixels in libero_spatial task 0's agentview at 128 px, "full"
   render quality (LIBERO's own look), the floor's pixels found by MuJoCo's segmentation render.

Each run adds (or replaces) the installed MuJoCo version's entry in
benchmarks/results/libero_mujoco.json and rewrites libero_mujoco.md, one row per version
checked. To compare another MuJoCo, run this script from a throwaway venv that has it, e.g.

    python benchmarks/libero_mujoco.py
    python -m venv --system-site-packages /tmp/mj330 && /tmp/mj330/bin/pip install --no-deps mujoco==3.3.0
    /tmp/mj330/bin/python benchmarks/libero_mujoco.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # envs from this checkout, installed or not

from envs.hdf5_format import package_versions  # noqa: E402
from envs.libero_env import LiberoEnv  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RAMEKIN_TASK = 5  # libero_spatial: "pick up the black bowl on the ramekin and place it on the plate"


def ramekin_starts(states: int) -> dict:
    """Per stored state of libero_spatial/5: On(bowl, ramekin) by LIBERO's predicate, bowl tilt
    (degrees) and the bowl's horizontal offset from the ramekin (cm), after the reset."""
    env = LiberoEnv("libero_spatial", RAMEKIN_TASK, cameras=("agentview",), image_size=32, init_state="cycle")
    bowl = env.task_bodies()[0]
    condition = next(c for c in env.sim_env.parsed_problem["initial_state"] if c[0] == "on" and c[1] == bowl)
    ramekin = condition[2]
    rows = []
    for index in range(min(states, len(env.initial_states))):
        env.reset(seed=index)  # cycle mode: seed i starts from stored state i
        body_z = env.mj_data.xmat[env._root_body(bowl)].reshape(3, 3)[:, 2]
        offset = env.body_position(bowl)[:2] - env.body_position(ramekin)[:2]
        rows.append(
            {
                "state": index,
                "on_ramekin": bool(env.sim_env._eval_predicate(condition)),
                "tilt_deg": round(float(np.degrees(np.arccos(np.clip(body_z[2], -1.0, 1.0)))), 2),
                "offset_cm": round(float(np.linalg.norm(offset)) * 100, 2),
            }
        )
    env.close()
    tilts = [r["tilt_deg"] for r in rows]
    offsets = [r["offset_cm"] for r in rows]
    return {
        "states": len(rows),
        "on_ramekin": sum(r["on_ramekin"] for r in rows),
        "tilt_deg_median": round(float(np.median(tilts)), 2),
        "tilt_deg_max": max(tilts),
        "offset_cm_median": round(float(np.median(offsets)), 2),
        "offset_cm_max": max(offsets),
        "rows": rows,
    }


def floor_brightness() -> dict:
    """Mean RGB (0-255) and pixel count of the floor in libero_spatial/0's agentview (128 px, full quality)."""
    import mujoco

    env = LiberoEnv("libero_spatial", 0, cameras=("agentview",), image_size=128, render_quality="full", init_state="cycle")
    env.reset(seed=0)
    model, data = env.mj_model, env.mj_data
    floor = [g for g in range(model.ngeom) if "floor" in (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or "")]
    renderer = mujoco.Renderer(model, 128, 128)
    renderer.update_scene(data, camera="agentview")
    renderer.enable_segmentation_rendering()
    segmentation = renderer.render()  # [H, W, 2]: object id, object type
    renderer.disable_segmentation_rendering()
    renderer.update_scene(data, camera="agentview")
    rgb = renderer.render()  # [H, W, 3] uint8
    renderer.close()
    env.close()
    mask = (segmentation[..., 1] == mujoco.mjtObj.mjOBJ_GEOM) & np.isin(segmentation[..., 0], floor)
    if not mask.any():
        raise SystemExit("no floor pixels in libero_spatial/0's agentview: the floor geom was not found by name")
    return {"floor_pixels": int(mask.sum()), "floor_rgb_mean": [round(float(c), 1) for c in rgb[mask].mean(axis=0)]}


def report(results: dict) -> str:
    lines = [
        "libero_spatial/5 after reset (LIBERO's stored state + 10 settling no-op steps), and the floor's mean RGB "
        "in libero_spatial/0's agentview (128 px, full quality); `python benchmarks/libero_mujoco.py` per MuJoCo version.",
        "",
        "| MuJoCo | robosuite | On(bowl, ramekin) | bowl tilt median / max (deg) | offset from ramekin median / max (cm) "
        "| floor RGB mean (pixels) |",
        "|---|---|---|---|---|---|",
    ]
    for version, entry in sorted(results.items()):
        starts, floor = entry["ramekin_starts"], entry["floor"]
        rgb = ", ".join(f"{c:.1f}" for c in floor["floor_rgb_mean"])
        lines.append(
            f"| {version} | {entry['versions'].get('robosuite', '-')} | {starts['on_ramekin']}/{starts['states']} "
            f"| {starts['tilt_deg_median']:.1f} / {starts['tilt_deg_max']:.1f} "
            f"| {starts['offset_cm_median']:.2f} / {starts['offset_cm_max']:.2f} | {rgb} ({floor['floor_pixels']}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=50, help="stored initial states of libero_spatial/5 to check")
    args = parser.parse_args()
    import mujoco

    path = RESULTS / "libero_mujoco.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results[mujoco.__version__] = {
        "versions": package_versions(),
        "ramekin_starts": ramekin_starts(args.states),
        "floor": floor_brightness(),
    }
    path.write_text(json.dumps(results, indent=2) + "\n")
    table = report(results)
    (RESULTS / "libero_mujoco.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
