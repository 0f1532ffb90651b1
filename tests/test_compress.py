"""Visual-token compressors: the shared contract, GridS's sampling and init, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gridslab.compress import COMPRESSORS, build_compressor, check_k
from gridslab.compress.base import CompressContext, patch_centres
from gridslab.compress.grids import GridS, sample_at, uniform_grid
from gridslab.errors import UserError

DIM = 16
NAMES = ["grids", "identity", "pool", "random", "topk", "tokenlearner"]


def feature_map(batch: int = 3, height: int = 4, width: int = 4, seed: int = 0) -> torch.Tensor:
    """Random ``[B, H, W, C]`` features."""
    return torch.randn(batch, height, width, DIM, generator=torch.Generator().manual_seed(seed))


def text_context(batch: int = 3, length: int = 5, k: torch.Tensor | None = None, seed: int = 1) -> CompressContext:
    """Random instruction tokens ``[B, T, C]``; the last sample's last two tokens are padding."""
    text = torch.randn(batch, length, DIM, generator=torch.Generator().manual_seed(seed))
    text_mask = torch.ones(batch, length, dtype=torch.bool)
    text_mask[-1, -2:] = False
    return CompressContext(text=text, text_mask=text_mask, k=k)


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


def test_every_compressor_is_registered():
    assert COMPRESSORS.names() == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_contract_shapes_dtypes_coords_and_budget(name):
    compressor = build_compressor({"name": name, "k": 4}, DIM)
    feats = feature_map()
    k_max = compressor.num_tokens(4, 4)
    assert k_max == (16 if name == "identity" else 4)

    out = compressor(feats, text_context())
    assert out.tokens.shape == (3, k_max, DIM) and out.tokens.dtype == torch.float32
    assert out.coords.shape == (3, k_max, 2) and out.coords.dtype == torch.float32
    assert out.mask.shape == (3, k_max) and out.mask.dtype == torch.bool
    assert out.mask.all()
    assert torch.isfinite(out.tokens).all()
    assert (out.coords >= 0).all() and (out.coords <= 1).all()

    budget = torch.tensor([1, 3, 4])
    masked = compressor(feats, text_context(k=budget))
    if name == "identity":  # ignores the budget: all H*W tokens
        assert masked.mask.all()
    else:
        assert masked.mask.sum(dim=1).tolist() == budget.tolist()
        assert masked.mask[0].tolist() == [True, False, False, False]


@pytest.mark.parametrize("name", ["pool", "random", "topk"])
def test_pickers_return_patch_features_at_patch_centres(name):
    """Pool at K = H*W, random and top-K return real patches and their centres."""
    compressor = build_compressor({"name": name, "k": 4}, DIM).eval()
    feats = feature_map(height=2, width=2)
    out = compressor(feats, text_context())
    flat = feats.reshape(3, 4, DIM)
    centres = patch_centres(2, 2)
    for b in range(3):
        for slot in range(4):
            patch = int((centres - out.coords[b, slot]).abs().sum(dim=1).argmin())
            assert torch.allclose(out.coords[b, slot], centres[patch])
            assert torch.allclose(out.tokens[b, slot], flat[b, patch])


def test_identity_is_every_patch_in_raster_order():
    feats = feature_map(height=3, width=5)
    out = build_compressor({"name": "identity"}, DIM)(feats, CompressContext())
    assert torch.equal(out.tokens, feats.reshape(3, 15, DIM))
    assert torch.equal(out.coords[1], patch_centres(3, 5))


def test_pool_is_adaptive_average_pooling_on_the_most_square_grid():
    feats = feature_map(height=4, width=6)
    out = build_compressor({"name": "pool", "k": 6}, DIM)(feats, CompressContext())
    expected = F.adaptive_avg_pool2d(feats.permute(0, 3, 1, 2), (2, 3)).flatten(2).transpose(1, 2)
    assert torch.allclose(out.tokens, expected, atol=1e-6)
    xs, ys = [1 / 6, 3 / 6, 5 / 6], [1 / 4, 3 / 4]
    assert torch.allclose(out.coords[0], torch.tensor([[x, y] for y in ys for x in xs]))


def random_picks(compressor, feats: torch.Tensor, seeds: list[int] | None = None, camera: int = 0) -> torch.Tensor:
    """``[B, K, 2]`` centres the random compressor picks, with per-sample ``noise_seed``s."""
    noise_seed = None if seeds is None else torch.tensor(seeds)
    return compressor(feats, CompressContext(noise_seed=noise_seed, camera_index=camera)).coords


def test_random_eval_draw_follows_the_noise_seed_and_the_camera():
    """The old eval draw re-seeded one generator with ``seed`` on every call: every call,
    every sample and both cameras read the same patches. Each assertion below fails on it."""
    compressor = build_compressor({"name": "random", "k": 3, "seed": 7}, DIM).eval()
    feats = feature_map(batch=2, height=5, width=5)
    first = random_picks(compressor, feats, [11, 12])
    assert torch.equal(first, random_picks(compressor, feats, [11, 12]))  # repeatable
    assert not torch.equal(first[0], random_picks(compressor, feats, [13, 12])[0])  # next call: fresh
    assert torch.equal(first[1], random_picks(compressor, feats, [13, 12])[1])  # per sample
    assert not torch.equal(first[0], first[1])  # samples of one call differ
    assert not torch.equal(first, random_picks(compressor, feats, [11, 12], camera=1))  # cameras differ
    other_seed = build_compressor({"name": "random", "k": 3, "seed": 8}, DIM).eval()
    assert not torch.equal(first, random_picks(other_seed, feats, [11, 12]))
    alone = random_picks(compressor, feats[1:], [12])  # independent of the batch it is in
    assert torch.equal(alone[0], first[1])
    for sample_coords in first:  # distinct patches
        assert len({tuple(xy) for xy in sample_coords.tolist()}) == 3


def test_random_draws_from_the_global_rng_in_training_and_without_a_noise_seed():
    compressor = build_compressor({"name": "random", "k": 3}, DIM)
    feats = feature_map(batch=4, height=5, width=5)
    for mode in (compressor.train, compressor.eval):
        mode()
        torch.manual_seed(0)
        draws = [random_picks(compressor, feats) for _ in range(5)]
        assert any(not torch.equal(draws[0], later) for later in draws[1:])
        torch.manual_seed(0)
        assert torch.equal(random_picks(compressor, feats), draws[0])
    compressor.train()  # training ignores the noise seed
    assert not torch.equal(random_picks(compressor, feats, [1, 2, 3, 4]), random_picks(compressor, feats, [1, 2, 3, 4]))


@pytest.mark.parametrize("name", ["grids", "pool", "topk", "tokenlearner", "identity"])
def test_other_compressors_are_deterministic_and_the_same_in_train_and_eval(name):
    """No hidden RNG or state: the same input gives the same tokens in every call, mode,
    camera and noise seed."""
    compressor = build_compressor({"name": name, "k": 4}, DIM)
    feats, ctx = feature_map(), text_context()
    reference = compressor(feats, ctx)
    for mode in (compressor.train, compressor.eval):
        mode()
        for camera, seeds in ((0, None), (1, torch.tensor([5, 6, 7]))):
            out = compressor(feats, CompressContext(ctx.text, ctx.text_mask, noise_seed=seeds, camera_index=camera))
            assert torch.equal(out.tokens, reference.tokens) and torch.equal(out.coords, reference.coords)


def test_topk_picks_the_patch_most_similar_to_the_text():
    compressor = build_compressor({"name": "topk", "k": 1, "attention_dim": DIM}, DIM)
    with torch.no_grad():
        for layer in (compressor.key, compressor.text_query):
            layer.weight.copy_(torch.eye(DIM))
            layer.bias.zero_()
    feats = F.normalize(feature_map(batch=2), dim=-1)
    targets = [(2, 3), (0, 1)]  # (row, col) per sample
    text = torch.stack([5 * feats[b, row, col] for b, (row, col) in enumerate(targets)])[:, None]
    out = compressor(feats, CompressContext(text=text))
    for b, (row, col) in enumerate(targets):
        assert torch.allclose(out.tokens[b, 0], feats[b, row, col])
        assert torch.allclose(out.coords[b, 0], torch.tensor([(col + 0.5) / 4, (row + 0.5) / 4]))


def test_topk_budget_keeps_the_most_salient_and_scorer_gets_gradient():
    compressor = build_compressor({"name": "topk", "k": 4}, DIM)
    feats, ctx = feature_map(), text_context(k=torch.tensor([2, 4, 1]))
    scores = compressor.saliency(feats, ctx)
    out = compressor(feats, ctx)
    centres = patch_centres(4, 4)
    for b, kept in enumerate([2, 4, 1]):
        best = set(scores[b].topk(kept).indices.tolist())
        picked = [int((centres - xy).abs().sum(dim=1).argmin()) for xy in out.coords[b, :kept]]
        assert set(picked) == best and picked == sorted(picked)
    out.tokens.square().sum().backward()
    for layer in (compressor.key, compressor.text_query):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_topk_learned_query_needs_no_text():
    compressor = build_compressor({"name": "topk", "k": 2, "query": "learned"}, DIM)
    out = compressor(feature_map(), CompressContext())
    assert out.tokens.shape == (3, 2, DIM)
    with pytest.raises(UserError) as excinfo:
        build_compressor({"name": "topk", "k": 2}, DIM)(feature_map(), CompressContext())
    assert "query=learned" in one_line_error(excinfo)


def test_tokenlearner_coords_are_map_weighted_positions():
    compressor = build_compressor({"name": "tokenlearner", "k": 3}, DIM)
    feats = feature_map()
    maps = compressor.attention_maps(feats)
    assert torch.allclose(maps.sum(dim=-1), torch.ones(3, 3))
    out = compressor(feats, CompressContext())
    assert torch.allclose(out.coords, maps @ patch_centres(4, 4), atol=1e-6)
    out.coords.sum().backward()
    assert compressor.map_logits[0].weight.grad.abs().sum() > 0


# GridS -------------------------------------------------------------------------------


@pytest.mark.parametrize("height,width", [(4, 4), (8, 2)])
def test_sample_at_a_patch_centre_is_exactly_that_patch(height, width):
    feats = feature_map(batch=2, height=height, width=width)
    centres = patch_centres(height, width).expand(2, -1, -1)
    assert torch.equal(sample_at(feats, centres), feats.reshape(2, height * width, DIM))


def test_sample_at_a_patch_centre_on_an_odd_grid():
    feats = feature_map(batch=2, height=7, width=5)
    centres = patch_centres(7, 5).expand(2, -1, -1)
    assert torch.allclose(sample_at(feats, centres), feats.reshape(2, 35, DIM), atol=1e-5)


def test_sample_at_is_bilinear_between_centres():
    feats = feature_map(batch=1)
    midway = torch.tensor([[[0.25, 0.125]]])  # between patches (0, 0) and (0, 1)
    expected = (feats[0, 0, 0] + feats[0, 0, 1]) / 2
    assert torch.allclose(sample_at(feats, midway)[0, 0], expected, atol=1e-6)


def test_uniform_init_is_exactly_the_uniform_grid_and_matches_pooling():
    grids = build_compressor({"name": "grids", "k": 4, "init": "uniform"}, DIM)
    feats = feature_map()
    coords = grids.coordinates(feats, CompressContext())
    expected = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]).expand(3, -1, -1)
    assert torch.allclose(coords, expected, atol=1e-6)
    pooled = F.adaptive_avg_pool2d(feats.permute(0, 3, 1, 2), 2).flatten(2).transpose(1, 2)
    assert torch.allclose(sample_at(feats, coords), pooled, atol=1e-5)


def test_uniform_init_for_non_square_k_and_with_margin():
    grids = build_compressor({"name": "grids", "k": 6, "init": "uniform", "margin": 0.1}, DIM)
    coords = grids.coordinates(feature_map(), CompressContext())
    assert torch.allclose(coords[0], uniform_grid(6).float(), atol=1e-6)
    assert torch.allclose(uniform_grid(6)[:3, 0], torch.tensor([1 / 6, 3 / 6, 5 / 6], dtype=torch.float64))


def test_margin_keeps_coords_inside():
    grids = build_compressor({"name": "grids", "k": 8, "margin": 0.1}, DIM)
    with torch.no_grad():
        grids.coord_mlp[-1].bias.copy_(torch.tensor([50.0, -50.0] * 8))  # push to the corners
    coords = grids.coordinates(feature_map(), CompressContext())
    assert torch.allclose(coords[..., 0], torch.full_like(coords[..., 0], 0.9))
    assert torch.allclose(coords[..., 1], torch.full_like(coords[..., 1], 0.1))
    assert (coords >= 0.1 - 1e-6).all() and (coords <= 0.9 + 1e-6).all()


def test_uniform_init_builds_on_the_meta_device():
    """train.py checks a config by building its policy on the meta device before any data is
    collected (``check_before_data``); the uniform init crashed there (``.item()`` of a meta
    tensor), so ``compressor.init=uniform`` could not train. It builds, and still refuses a
    margin that leaves the grid no room."""
    from gridslab.config.load import load_config
    from gridslab.train.fit import check_before_data

    with torch.device("meta"):
        grids = build_compressor({"name": "grids", "k": 4, "init": "uniform"}, DIM)
        with pytest.raises(UserError, match="margin=0.3"):
            build_compressor({"name": "grids", "k": 4, "init": "uniform", "margin": 0.3}, DIM)
    assert grids.coord_mlp[-1].bias.is_meta
    assert check_before_data(load_config(["compressor=grids", "compressor.init=uniform"])) is None


@pytest.mark.parametrize("init", ["random", "uniform"])
def test_gradient_reaches_the_coordinate_mlp_through_the_tokens(init):
    grids = build_compressor({"name": "grids", "k": 4, "init": init, "layer_norm": True}, DIM)
    out = grids(feature_map(), CompressContext())
    (out.tokens * torch.randn_like(out.tokens)).sum().backward()
    last = grids.coord_mlp[-1].weight.grad
    assert last is not None and last.abs().sum() > 0
    if init == "random":
        assert grids.coord_mlp[0].weight.grad.abs().sum() > 0


CONVENTIONS = [(False, "border"), (False, "zeros"), (True, "border"), (True, "zeros"), (True, "clamp")]


@pytest.mark.parametrize("align_corners,padding", CONVENTIONS)
def test_read_gradient_wrt_coords_is_the_ramp_slope(align_corners, padding):
    """On F[h, w] = a w + b h the read is a x + b y, so d read / d c = (a, b) times W (or
    W - 1 corner-aligned), exactly; a read with no gradient to its coords fails here."""
    height, width = 4, 5
    slopes = torch.randn(2, DIM, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ramp = (cols[..., None] * slopes[0] + rows[..., None] * slopes[1]).unsqueeze(0)  # [1, H, W, C]
    coords = torch.tensor([[[0.31, 0.62], [0.73, 0.27], [0.45, 0.55]]], dtype=torch.float64, requires_grad=True)
    weights = torch.randn(1, 3, DIM, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    (sample_at(ramp, coords, align_corners, padding) * weights).sum().backward()
    scale = torch.tensor([width - 1, height - 1] if align_corners else [width, height], dtype=torch.float64)
    expected = (weights @ slopes.T) * scale  # [1, K, 2]: sum_c weight_c * slope_c * scale
    assert coords.grad.abs().min() > 0
    assert torch.allclose(coords.grad, expected, atol=1e-10)


@pytest.mark.parametrize("align_corners,padding", CONVENTIONS)
def test_read_gradient_wrt_coords_matches_finite_differences(align_corners, padding):
    feats = feature_map(batch=2, height=3, width=4).double()
    coords = torch.rand(2, 5, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 0.8 + 0.1
    coords.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c: sample_at(feats, c, align_corners, padding), (coords,))
    sample_at(feats, coords, align_corners, padding).sum().backward()
    assert coords.grad.abs().sum() > 0


def test_gradient_reaches_the_coordinate_mlp_through_the_read_alone():
    # random init: the uniform one zeroes the last layer's weights, so its first step reaches
    # only that layer (test_gradient_reaches_the_coordinate_mlp_through_the_tokens)
    grids = build_compressor({"name": "grids", "k": 4, "embed_coords": False, "init": "random"}, DIM)
    assert grids.coord_embed is None
    out = grids(feature_map(), CompressContext())
    (out.tokens * torch.randn_like(out.tokens)).sum().backward()
    assert grids.coord_mlp[0].weight.grad.abs().sum() > 0


def test_conditioning_starts_as_identity_and_follows_the_text():
    # random init: the uniform one starts the points on the grid for every input and text
    plain = build_compressor({"name": "grids", "k": 4, "init": "random"}, DIM)
    conditioned = build_compressor({"name": "grids", "k": 4, "condition": True, "init": "random"}, DIM)
    conditioned.coord_mlp.load_state_dict(plain.coord_mlp.state_dict())
    feats = feature_map()
    ctx_a, ctx_b = text_context(seed=1), text_context(seed=2)
    assert torch.allclose(conditioned.coordinates(feats, ctx_a), plain.coordinates(feats, ctx_a))
    assert torch.allclose(conditioned.coordinates(feats, ctx_a), conditioned.coordinates(feats, ctx_b))
    with torch.no_grad():
        conditioned.film.weight.normal_(std=0.5)
    assert not torch.allclose(conditioned.coordinates(feats, ctx_a), conditioned.coordinates(feats, ctx_b))
    with pytest.raises(UserError) as excinfo:
        conditioned(feats, CompressContext())
    assert "condition=false" in one_line_error(excinfo)


def test_build_returns_typed_classes():
    assert isinstance(build_compressor({"name": "grids", "k": 2}, DIM), GridS)


# errors ------------------------------------------------------------------------------


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UserError) as excinfo:
        build_compressor({"name": "gridz", "k": 4}, DIM)
    message = one_line_error(excinfo)
    assert "'gridz'" in message and all(name in message for name in NAMES)


def test_unknown_option_key():
    with pytest.raises(UserError) as excinfo:
        build_compressor({"name": "grids", "k": 4, "margn": 0.1}, DIM)
    message = one_line_error(excinfo)
    assert "margn" in message and "margin" in message


@pytest.mark.parametrize("k", [0, -3])
def test_k_below_one(k):
    with pytest.raises(UserError) as excinfo:
        build_compressor({"name": "pool", "k": k}, DIM)
    assert str(k) in one_line_error(excinfo)


@pytest.mark.parametrize(
    "options",
    [
        {"init": "grid"},
        {"margin": 0.5},
        {"margin": 0.3, "init": "uniform"},
        {"activation": "tanh"},
        {"padding": "reflect"},
        {"padding": "clamp", "align_corners": False},
    ],
)
def test_bad_grids_options(options):
    with pytest.raises(UserError) as excinfo:
        build_compressor({"name": "grids", "k": 4, **options}, DIM)
    one_line_error(excinfo)


@pytest.mark.parametrize("name", ["pool", "random", "topk"])
def test_k_above_patch_count(name):
    compressor = build_compressor({"name": name, "k": 17, "query": "learned"} if name == "topk" else {"name": name, "k": 17}, DIM)
    with pytest.raises(UserError) as excinfo:
        compressor(feature_map(), CompressContext())
    message = one_line_error(excinfo)
    assert "k=17" in message and "16 patches" in message
    with pytest.raises(UserError):
        compressor.num_tokens(4, 4)


def test_pool_grid_must_fit_the_map():
    with pytest.raises(UserError) as excinfo:
        build_compressor({"name": "pool", "k": 7}, DIM)(feature_map(height=3, width=3), CompressContext())
    assert "1x7" in one_line_error(excinfo)


@pytest.mark.parametrize("name", [name for name in NAMES if name != "identity"])
def test_check_k_refuses_more_tokens_than_patches_without_building(name, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("check_k built a module")

    monkeypatch.setattr(COMPRESSORS.entry(name).factory, "__init__", refuse)
    check_k({"name": name, "k": 16}, 4, 4)
    check_k({"name": name, "k": 12}, 3, 4)
    with pytest.raises(UserError) as excinfo:
        check_k({"name": name, "k": 100000}, 16, 16)
    message = one_line_error(excinfo)
    assert all(part in message for part in (f"'{name}'", "k=100000", "16x16", "1 <= k <= 256"))


def test_identity_accepts_any_k_because_it_keeps_every_patch():
    check_k({"name": "identity", "k": 100000}, 16, 16)  # older identity runs stored k=100000 for "all"
    tokens = build_compressor({"name": "identity", "k": 100000}, 8)(torch.randn(2, 3, 4, 8), CompressContext())
    assert tokens.tokens.shape == (2, 12, 8)


def test_check_k_validates_the_config_and_the_pool_grid():
    with pytest.raises(UserError) as excinfo:
        check_k({"name": "grids", "k": 0}, 4, 4)
    assert "got 0" in one_line_error(excinfo)
    with pytest.raises(UserError) as excinfo:
        check_k({"name": "grids", "k": 4, "margn": 0.1}, 4, 4)
    assert "margn" in one_line_error(excinfo)
    with pytest.raises(UserError) as excinfo:
        check_k({"name": "pool", "k": 7}, 3, 3)
    assert "1x7" in one_line_error(excinfo)
    check_k({"name": "pool", "k": 8}, 2, 4)


@pytest.mark.parametrize("name", NAMES)
def test_max_k_is_the_patch_count(name):
    cls = COMPRESSORS.entry(name).factory
    assert cls.max_k(7, 7) == 49
