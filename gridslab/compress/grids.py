"""GridS: K learned (x, y) points per image; features read there by bilinear interpolation.

    F = feats [B, H, W, C] -> p = mean of F over H, W                           [B, C]
      -> LayerNorm (``layer_norm``) -> FiLM from the instruction (``condition``)
      -> u = sigmoid(W2 act(W1 p + b1) + b2)    (C -> hidden -> 2K)              [B, 2K]
      -> c = margin + (1 - 2 margin) u, as K pairs (x_k, y_k) = (u_2k, u_2k+1)    [B, K, 2]
      -> tokens = read(F, c) + E(c),  E(c) = W4 act(W3 c + b3) + b4 (2 -> coord_hidden -> C;
         only with ``embed_coords``)                                             [B, K, C]
      -> Tokens(tokens, coords c, mask [B, K] from ctx.k)

The read. Coordinates are image units (x to the right, y downwards, 0 and 1 the image
borders); ``align_corners`` turns them into continuous patch indices
    false:  x = c_x W - 1/2,   y = c_y H - 1/2   (patch j's centre (j + 0.5) / W -> j)
    true:   x = c_x (W - 1),   y = c_y (H - 1)   (c = 0 and 1 -> the corner patches' centres)
and with x0 = floor(x), y0 = floor(y), x1 = x0 + 1, y1 = y0 + 1
    read(F, c) = (x1 - x)(y1 - y) F[y0, x0] + (x1 - x)(y - y0) F[y1, x0]
               + (x - x0)(y1 - y) F[y0, x1] + (x - x0)(y - y0) F[y1, x1].
``padding`` says what happens at the map's edge:
    zeros:  F[j, i] = 0 off the map (``F.grid_sample`` zeros: a point in the outer half-patch
            fades towards 0 with align_corners=false);
    border: x, y are first clamped to [0, W - 1], [0, H - 1] (``F.grid_sample`` border);
    clamp:  x0, y0 are clamped into the map, the weights keep x1 = x0 + 1, and each of the
            four reads clamps its index into the map (openpi's ``grid_sample_jax``: JAX clips
            out-of-bound gather indices); needs align_corners=true.
With align_corners=true and c in [0, 1] the three paddings read the same values; they differ
only in d read / d c at an exact edge: at c_x = 1 it is 0 for clamp and border and
-(W - 1) F[., W - 1] for zeros; at c_x = 0 it is (W - 1)(F[., 1] - F[., 0]) for clamp and
zeros and 0 for border (PyTorch treats the clamped edge as flat). A sigmoid reaches an edge
only when it saturates (u = 1.0 in float32 past a logit of ~17), where its own derivative
is 0 too, so GridS's tokens and parameter gradients agree across the three up to rounding;
``clamp`` makes the openpi preset exactly openpi's read, edge derivatives included.

Three variants, the same weights giving the same tokens as the code they follow:
    ours (grids.yaml, the dataclass defaults): act = GELU, align_corners=false,
        padding=border, embed_coords on. align_corners=false agrees with ``patch_centres``
        and the other compressors' coords (a patch centre returns exactly that patch, a
        uniform grid of 2x2-patch cells reads each cell's mean = adaptive average pooling);
        border keeps points in the outer half-patch on the edge features; init=uniform
        (the references' init is ``init=random``).
    openpi (grids_openpi.yaml): Fediory/Grid-Sampler ``openpi/src/openpi/models/grid.py``
        (``ActiveTokenSampler`` + ``grid_sample_jax``, called by ``pi0.py`` with
        noise=False): act = ReLU, hidden 512, coord_hidden 256, align_corners=true,
        padding=clamp, embed_coords on.
    lerobot (grids_lerobot.yaml): ``lerobot/src/lerobot/policies/active_token_sampler.py``:
        act = ReLU, hidden 512, coord_hidden 256, ``F.grid_sample(align_corners=False)``
        with zeros padding, embed_coords on. It first adaptive-average-pools a non-square map
        to min(H, W) x min(H, W); every encoder here gives a square g x g grid, where that
        is the identity, so there is no switch for it.
The authors' ``core_idea/grid_new.py`` adds a LayerNorm before the coordinate MLP
(``layer_norm``; flax's eps is 1e-6, ours 1e-5) and a margin (``margin``), and clamps x1
in the weights as well, which zeroes all four weights at c = 1; that read is not offered.
Language conditioning and the uniform-grid init are ours; the references have neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gridslab.compress._registry import COMPRESSORS
from gridslab.compress.base import (
    CompressContext,
    Compressor,
    CompressorConfig,
    Tokens,
    budget_mask,
    masked_mean,
    most_square_grid,
)
from gridslab.errors import UserError

INITS = ("random", "uniform")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}
PADDINGS = ("zeros", "border", "clamp")


@dataclass
class GridSConfig(CompressorConfig):
    """GridS options (the defaults are ``conf/compressor/grids.yaml``; see the module docstring).

    hidden: width of the coordinate MLP (C -> hidden -> 2K);
    coord_hidden: width of the coordinate embedding MLP (2 -> coord_hidden -> C);
    activation: "gelu" or "relu", in both MLPs;
    align_corners: false: coords 0 and 1 are the image borders; true: the corner patches'
    centres;
    padding: "zeros", "border" or "clamp" (openpi's index-clamped read, needs
    align_corners=true);
    embed_coords: add the coordinate embedding MLP(c) to the sampled features;
    layer_norm: LayerNorm on the pooled feature before the coordinate MLP;
    condition: FiLM the pooled feature with the mean instruction token (needs ctx.text);
    margin: coords = margin + (1 - 2 margin) * sigmoid, in [0, 0.5), against corner collapse;
    init: "uniform" (start exactly on the most-square rows x cols grid of cell centres; these
    read the cell means with align_corners=false; the default) or "random" (default Linear
    init, as the authors' code: points start near the centre, input-dependent).
    """

    name: str = "grids"
    hidden: int = 512
    coord_hidden: int = 256
    activation: str = "gelu"
    align_corners: bool = False
    padding: str = "border"
    embed_coords: bool = True
    layer_norm: bool = False
    condition: bool = False
    margin: float = 0.0
    init: str = "uniform"


def sample_at(feats: Tensor, coords: Tensor, align_corners: bool = False, padding: str = "border") -> Tensor:
    """Bilinear read of ``feats [B, H, W, C]`` at ``coords [B, K, 2]`` (x, y) in [0, 1]
    image units -> ``[B, K, C]`` under one convention (module docstring). With the defaults
    a patch centre ``((i + 0.5) / W, (j + 0.5) / H)`` returns that patch's feature.
    Differentiable w.r.t. both arguments."""
    if padding == "clamp":
        if not align_corners:
            raise ValueError("padding='clamp' is openpi's corner-aligned read; it needs align_corners=True")
        return read_index_clamped(feats, coords)
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # [B, K, 1, 2]
    sampled = F.grid_sample(
        feats.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode=padding, align_corners=align_corners
    )  # [B, C, K, 1]
    return sampled.squeeze(3).transpose(1, 2)


def read_index_clamped(feats: Tensor, coords: Tensor) -> Tensor:
    """openpi's ``grid_sample_jax``, batched: ``feats [B, H, W, C]`` at ``coords [B, K, 2]``
    -> ``[B, K, C]`` with x = c_x (W - 1), x0 = clamp(floor(x), 0, W - 1), weights from the
    unclamped x1 = x0 + 1 and each read's index clamped into the map (likewise for y)."""
    height, width = feats.shape[1:3]
    x = coords[..., 0] * (width - 1)
    y = coords[..., 1] * (height - 1)
    x0 = x.detach().floor().clamp(0, width - 1)
    y0 = y.detach().floor().clamp(0, height - 1)
    x1, y1 = x0 + 1, y0 + 1
    return (
        ((x1 - x) * (y1 - y))[..., None] * gather_clamped(feats, y0, x0)
        + ((x1 - x) * (y - y0))[..., None] * gather_clamped(feats, y1, x0)
        + ((x - x0) * (y1 - y))[..., None] * gather_clamped(feats, y0, x1)
        + ((x - x0) * (y - y0))[..., None] * gather_clamped(feats, y1, x1)
    )


def gather_clamped(feats: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``feats [B, H, W, C]`` at whole-number ``rows, cols [B, K]``, each clamped into the
    map -> ``[B, K, C]``."""
    batch, height, width, dim = feats.shape
    index = rows.clamp(0, height - 1).long() * width + cols.clamp(0, width - 1).long()
    return feats.reshape(batch, height * width, dim).gather(1, index[..., None].expand(-1, -1, dim))


def uniform_grid(k: int) -> Tensor:
    """``[K, 2]`` (x, y) cell centres of the most-square rows x cols grid, row-major, on the
    CPU whatever the default device (a policy built on the meta device reads its values)."""
    rows, cols = most_square_grid(k)
    ys = (torch.arange(rows, dtype=torch.float64, device="cpu") + 0.5) / rows
    xs = (torch.arange(cols, dtype=torch.float64, device="cpu") + 0.5) / cols
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(k, 2)


def check_sampling(cfg: GridSConfig) -> None:
    """One-line ``UserError`` for an unknown activation or padding, or clamp padding
    without corner alignment."""
    if cfg.activation not in ACTIVATIONS:
        raise UserError(f"compressor.activation must be one of {', '.join(ACTIVATIONS)}, got {cfg.activation!r}")
    if cfg.padding not in PADDINGS:
        raise UserError(f"compressor.padding must be one of {', '.join(PADDINGS)}, got {cfg.padding!r}")
    if cfg.padding == "clamp" and not cfg.align_corners:
        raise UserError(
            "compressor.padding=clamp is openpi's corner-aligned read and needs "
            "compressor.align_corners=true; use padding=zeros or border with align_corners=false"
        )


@COMPRESSORS.register("grids", config=GridSConfig)
class GridS(Compressor):
    """Differentiable grid sampler: ``forward(feats [B, H, W, C], ctx) -> Tokens [B, K, C]``."""

    def __init__(self, cfg: GridSConfig, dim: int):
        super().__init__()
        if cfg.init not in INITS:
            raise UserError(f"compressor.init must be one of {', '.join(INITS)}, got {cfg.init!r}")
        if not 0.0 <= cfg.margin < 0.5:
            raise UserError(f"compressor.margin must be in [0, 0.5), got {cfg.margin}")
        if cfg.hidden < 1 or cfg.coord_hidden < 1:
            raise UserError(
                f"compressor.hidden and compressor.coord_hidden must be >= 1, got {cfg.hidden} and {cfg.coord_hidden}"
            )
        check_sampling(cfg)
        self.k_max = cfg.k
        self.margin = cfg.margin
        self.align_corners = bool(cfg.align_corners)
        self.padding = str(cfg.padding)
        act = ACTIVATIONS[cfg.activation]
        self.pooled_norm = nn.LayerNorm(dim) if cfg.layer_norm else nn.Identity()
        self.film = nn.Linear(dim, 2 * dim) if cfg.condition else None
        self.uses_text = bool(cfg.condition)
        self.coord_mlp = nn.Sequential(nn.Linear(dim, cfg.hidden), act(), nn.Linear(cfg.hidden, 2 * cfg.k))
        self.coord_embed = (
            nn.Sequential(nn.Linear(2, cfg.coord_hidden), act(), nn.Linear(cfg.coord_hidden, dim)) if cfg.embed_coords else None
        )
        if self.film is not None:
            self._init_film_identity(dim)
        if cfg.init == "uniform":
            self._init_uniform_grid(cfg.k)

    def _init_film_identity(self, dim: int) -> None:
        """gamma = 1, beta = 0 for any text: the FiLM starts as the identity."""
        nn.init.zeros_(self.film.weight)
        with torch.no_grad():
            self.film.bias.copy_(torch.cat([torch.ones(dim), torch.zeros(dim)]))

    def _init_uniform_grid(self, k: int) -> None:
        """Zero the last layer's weights and set its bias to the logits of the uniform grid."""
        grid = uniform_grid(k)
        nearest_edge = float(grid.min())
        if self.margin >= nearest_edge:
            raise UserError(
                f"compressor.margin={self.margin} leaves no room for the uniform grid of "
                f"k={k} (its outermost points are {nearest_edge:.4g} from the border); "
                f"use margin < {nearest_edge:.4g}"
            )
        unit = (grid - self.margin) / (1.0 - 2.0 * self.margin)
        last = self.coord_mlp[-1]
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.logit(unit).reshape(-1).to(last.bias.dtype))

    def coordinates(self, feats: Tensor, ctx: CompressContext) -> Tensor:
        """Sampling points ``[B, K, 2]`` (x, y) in ``[margin, 1 - margin]`` for ``feats [B, H, W, C]``."""
        pooled = self.pooled_norm(feats.mean(dim=(1, 2)))
        if self.film is not None:
            if ctx.text is None:
                raise UserError(
                    "compressor.condition=true needs an instruction, but the policy passed "
                    "no text; set compressor.condition=false"
                )
            gamma, beta = self.film(masked_mean(ctx.text, ctx.text_mask)).chunk(2, dim=-1)
            pooled = gamma * pooled + beta
        logits = self.coord_mlp(pooled).view(feats.shape[0], self.k_max, 2)
        return self.margin + (1.0 - 2.0 * self.margin) * torch.sigmoid(logits)

    def forward(self, feats: Tensor, ctx: CompressContext) -> Tokens:
        """feats ``[B, H, W, C]`` -> Tokens(tokens ``[B, K, C]``, coords ``[B, K, 2]``, mask ``[B, K]``)."""
        coords = self.coordinates(feats, ctx)
        tokens = sample_at(feats, coords, self.align_corners, self.padding)
        if self.coord_embed is not None:
            tokens = tokens + self.coord_embed(coords)
        return Tokens(tokens, coords, budget_mask(ctx.k, feats.shape[0], self.k_max, feats.device))
