"""The GridS presets reproduce the authors' code (Fediory/Grid-Sampler) given the same weights.

openpi: ``openpi/src/openpi/models/grid.py`` (``ActiveTokenSampler`` + ``grid_sample_jax``),
transcribed below in numpy, including JAX's clipping of out-of-bound gather indices.
lerobot: ``lerobot/src/lerobot/policies/active_token_sampler.py``, whose
``F.grid_sample(align_corners=False)`` with zero padding is written out below by hand.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from gridslab.compress import build_compressor
from gridslab.compress.base import CompressContext
from gridslab.compress.grids import GridS, GridSConfig, read_index_clamped, sample_at
from gridslab.config import CONF_DIR, load_config

DIM = 6
K = 5
PRESETS = {"grids": ("gelu", False, "border"), "grids_openpi": ("relu", True, "clamp"), "grids_lerobot": ("relu", False, "zeros")}
# their parameter names -> ours (the same [out, in] layout; flax Dense kernels are the transpose)
THEIR_NAMES = {
    "scout_mlp.0": "coord_mlp.0",
    "scout_mlp.2": "coord_mlp.2",
    "coord_encoder.0": "coord_embed.0",
    "coord_encoder.2": "coord_embed.2",
}


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def grid_sample_jax(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """openpi's ``grid_sample_jax`` line by line; ``take`` clips indices as JAX's gather does."""
    H, W, _ = image.shape
    x = coords[:, 0] * (W - 1)
    y = coords[:, 1] * (H - 1)
    x0 = np.maximum(0, np.minimum(np.floor(x).astype(np.int64), W - 1))
    y0 = np.maximum(0, np.minimum(np.floor(y).astype(np.int64), H - 1))
    x1 = x0 + 1
    y1 = y0 + 1

    def take(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return image[np.clip(rows, 0, H - 1), np.clip(cols, 0, W - 1)]

    Ia, Ib, Ic, Id = take(y0, x0), take(y1, x0), take(y0, x1), take(y1, x1)
    wa = (x1 - x) * (y1 - y)
    wb = (x1 - x) * (y - y0)
    wc = (x - x0) * (y1 - y)
    wd = (x - x0) * (y - y0)
    return wa[..., None] * Ia + wb[..., None] * Ib + wc[..., None] * Ic + wd[..., None] * Id


def grid_sample_zeros(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """``F.grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)`` at
    grid ``2 c - 1``: x = c_x W - 1/2, each of the four neighbours weighted by
    (1 - |x - i|)(1 - |y - j|), 0 where it lies off the map."""
    H, W, C = image.shape
    x = coords[:, 0] * W - 0.5
    y = coords[:, 1] * H - 0.5
    out = np.zeros((len(coords), C))
    for dy in (0, 1):
        for dx in (0, 1):
            i, j = np.floor(x).astype(np.int64) + dx, np.floor(y).astype(np.int64) + dy
            weight = (1 - np.abs(x - i)) * (1 - np.abs(y - j)) * ((0 <= i) & (i < W) & (0 <= j) & (j < H))
            out += weight[:, None] * image[np.clip(j, 0, H - 1), np.clip(i, 0, W - 1)]
    return out


def reference_forward(feats: np.ndarray, params: dict[str, np.ndarray], read) -> tuple[np.ndarray, np.ndarray]:
    """The authors' ``ActiveTokenSampler.__call__`` / ``forward`` (noise off, embed_coords
    on): ``feats [B, H, W, C]`` -> (sampled + coordinate embedding ``[B, K, C]``, coords)."""
    batch = feats.shape[0]
    global_feat = feats.mean(axis=(1, 2))
    hidden = relu(global_feat @ params["scout_mlp.0.weight"].T + params["scout_mlp.0.bias"])
    pred_coords = sigmoid(hidden @ params["scout_mlp.2.weight"].T + params["scout_mlp.2.bias"]).reshape(batch, K, 2)
    sampled = np.stack([read(feats[b], pred_coords[b]) for b in range(batch)])
    embed = relu(pred_coords @ params["coord_encoder.0.weight"].T + params["coord_encoder.0.bias"])
    return sampled + embed @ params["coord_encoder.2.weight"].T + params["coord_encoder.2.bias"], pred_coords


def their_weights(seed: int) -> dict[str, np.ndarray]:
    """Random weights under the authors' parameter names; two of the 2K coordinate logits
    saturate so that some points sit exactly on the right / bottom edge (c = 1.0)."""
    rng = np.random.default_rng(seed)
    shapes = {"scout_mlp.0": (512, DIM), "scout_mlp.2": (2 * K, 512), "coord_encoder.0": (256, 2), "coord_encoder.2": (DIM, 256)}
    params = {}
    for name, (out, inp) in shapes.items():
        params[f"{name}.weight"] = rng.normal(size=(out, inp)) / np.sqrt(inp)
        params[f"{name}.bias"] = rng.normal(size=out) * 0.1
    params["scout_mlp.2.bias"][[0, 3]] = 60.0  # x_0 = 1 and y_1 = 1 exactly
    return params


def preset(name: str, dtype: torch.dtype = torch.float64) -> GridS:
    """Preset ``name`` loaded through the config, with k = K (the presets say k: 4)."""
    return build_compressor(load_config([f"compressor={name}", f"compressor.k={K}"]).compressor, DIM).to(dtype)


def load_their_weights(grids: GridS, params: dict[str, np.ndarray]) -> None:
    state = {
        f"{THEIR_NAMES[key.rsplit('.', 1)[0]]}.{key.rsplit('.', 1)[1]}": torch.from_numpy(value) for key, value in params.items()
    }
    grids.load_state_dict(state)


def three_by_three() -> torch.Tensor:
    """``[1, 3, 3, 2]``: channel 0 is 10 row + col, channel 1 is fixed random values."""
    rows, cols = torch.meshgrid(torch.arange(3.0), torch.arange(3.0), indexing="ij")
    second = torch.tensor([[0.3, -1.2, 2.0], [0.7, 1.1, -0.4], [-2.2, 0.5, 1.6]])
    return torch.stack([10 * rows + cols, second], dim=-1)[None].double()


# presets load -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_load_and_build(name):
    cfg = load_config([f"compressor={name}"])
    activation, align_corners, padding = PRESETS[name]
    assert cfg.compressor.name == "grids"
    assert (cfg.compressor.activation, cfg.compressor.align_corners, cfg.compressor.padding) == PRESETS[name]
    assert cfg.compressor.hidden == 512 and cfg.compressor.coord_hidden == 256 and cfg.compressor.embed_coords
    assert not cfg.compressor.layer_norm and cfg.compressor.margin == 0.0 and not cfg.compressor.condition
    grids = build_compressor(cfg.compressor, DIM)
    assert isinstance(grids, GridS) and (grids.align_corners, grids.padding) == (align_corners, padding)
    assert isinstance(grids.coord_mlp[1], nn.ReLU if activation == "relu" else nn.GELU)
    assert isinstance(grids.coord_embed[1], type(grids.coord_mlp[1]))
    out = grids(torch.randn(2, 4, 4, DIM), CompressContext())
    assert out.tokens.shape == (2, 4, DIM)


def test_grids_yaml_is_the_dataclass_default():
    written = yaml.safe_load((CONF_DIR / "compressor" / "grids.yaml").read_text())
    assert written == dataclasses.asdict(GridSConfig())


def test_embed_coords_off_leaves_the_bare_read():
    grids = build_compressor({"name": "grids", "k": 3, "embed_coords": False}, DIM)
    feats = torch.randn(2, 4, 4, DIM)
    out = grids(feats, CompressContext())
    assert grids.coord_embed is None
    assert torch.equal(out.tokens, sample_at(feats, out.coords))


# hand-computed reads on a 3x3 map ------------------------------------------------------


def hand_cases(F: torch.Tensor) -> dict[str, list[tuple[tuple[float, float], torch.Tensor]]]:
    """(x, y) points and the read each convention gives there, weights worked out by hand."""
    f = F[0]
    return {
        # openpi: x = 2 c_x, y = 2 c_y; (0.25, 0.75) -> (0.5, 1.5): the four around, 1/4 each
        "grids_openpi": [
            ((0.25, 0.75), (f[1, 0] + f[1, 1] + f[2, 0] + f[2, 1]) / 4),
            ((1.0, 0.1), 0.8 * f[0, 2] + 0.2 * f[1, 2]),  # x = 2 exactly: column 2 alone
            ((1.0, 1.0), f[2, 2]),
            ((0.0, 0.0), f[0, 0]),
            ((0.5, 0.5), f[1, 1]),
        ],
        # lerobot: x = 3 c_x - 1/2; (0.25, 0.75) -> (0.25, 1.75); (1.0, 0.1) -> (2.5, -0.2):
        # column 3 and row -1 are off the map and read 0, so 0.5 * 0.8 of F[0, 2] is left
        "grids_lerobot": [
            ((0.25, 0.75), 0.75 * 0.25 * f[1, 0] + 0.25 * 0.25 * f[1, 1] + 0.75 * 0.75 * f[2, 0] + 0.25 * 0.75 * f[2, 1]),
            ((1.0, 0.1), 0.4 * f[0, 2]),
            ((0.5, 0.5), f[1, 1]),
            ((1 / 6, 1 / 6), f[0, 0]),
        ],
        # ours: as lerobot, but (2.5, -0.2) is clamped to (2, 0) first
        "grids": [
            ((0.25, 0.75), 0.75 * 0.25 * f[1, 0] + 0.25 * 0.25 * f[1, 1] + 0.75 * 0.75 * f[2, 0] + 0.25 * 0.75 * f[2, 1]),
            ((1.0, 0.1), f[0, 2]),
            ((1.0, 1.0), f[2, 2]),
            ((5 / 6, 1 / 2), f[1, 2]),
        ],
    }


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_read_matches_hand_bilinear_weights(name):
    F = three_by_three()
    _, align_corners, padding = PRESETS[name]
    points, expected = zip(*hand_cases(F)[name])
    coords = torch.tensor([points], dtype=torch.float64)
    assert torch.allclose(sample_at(F, coords, align_corners, padding)[0], torch.stack(expected), atol=1e-12)


def test_openpi_read_is_grid_sample_jax():
    feats = torch.randn(2, 5, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    coords = torch.rand(2, 40, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    coords[:, :8] = torch.tensor([[0, 0], [1, 1], [1, 0], [0, 1], [1, 0.3], [0.3, 1], [0.5, 0.5], [0.25, 0.75]])
    expected = np.stack([grid_sample_jax(feats[b].numpy(), coords[b].numpy()) for b in range(2)])
    assert np.allclose(read_index_clamped(feats, coords).numpy(), expected, atol=1e-12)


def test_openpi_read_gradient_is_jaxs_at_the_edges():
    """JAX differentiates grid_sample_jax through the weights only (floor is flat):
    d/dx = (y1 - y)(Ic - Ia) + (y - y0)(Id - Ib). At x = W - 1 the clipped read Ic is Ia, so
    the gradient is 0; at x = 0 it is one-sided. ``F.grid_sample``'s paddings differ here."""
    F = three_by_three()
    coords = torch.tensor([[[1.0, 0.25], [0.0, 0.25]]], dtype=torch.float64, requires_grad=True)
    read_index_clamped(F, coords)[..., 0].sum().backward()  # channel 0 = 10 row + col: d/dx = 1 inside
    assert coords.grad[0, :, 0].tolist() == [0.0, 2.0]  # (W - 1) * slope 1 at x = 0, flat at x = W - 1
    grads = {}
    for padding in ("zeros", "border"):
        c = coords.detach().clone().requires_grad_(True)
        sample_at(F, c, True, padding)[..., 0].sum().backward()
        grads[padding] = c.grad[0, :, 0].tolist()
    assert grads["border"] == [0.0, 0.0] and grads["zeros"][1] == 2.0 and grads["zeros"][0] < 0


# the whole forward, given the authors' weights -------------------------------------------


@pytest.mark.parametrize("name,read", [("grids_openpi", grid_sample_jax), ("grids_lerobot", grid_sample_zeros)])
def test_preset_forward_is_the_reference_forward(name, read):
    params = their_weights(seed=0)
    feats = np.random.default_rng(1).normal(size=(3, 4, 4, DIM))
    expected, expected_coords = reference_forward(feats, params, read)
    assert (expected_coords == 1.0).any()  # some points sit exactly on the edge
    grids = preset(name)
    load_their_weights(grids, params)
    out = grids(torch.from_numpy(feats), CompressContext())
    assert np.allclose(out.coords.detach().numpy(), expected_coords, atol=1e-12)
    assert np.allclose(out.tokens.detach().numpy(), expected, atol=1e-10)
    single = preset(name, torch.float32)
    load_their_weights(single, {key: value.astype(np.float32) for key, value in params.items()})
    out32 = single(torch.from_numpy(feats).float(), CompressContext())
    assert np.allclose(out32.tokens.detach().numpy(), expected, atol=1e-4)
