import math

import pytest
import torch
import torch.nn.functional as F

from gradinv.defenses import (
    DEFENSES,
    ClientRound,
    Defense,
    defended_update,
    make_defense,
    parse_defense,
    wrap,
)
from gradinv.defenses.precode import kl_divergence
from gradinv.defenses.prune import Prune
from gradinv.defenses.utility import fedavg_accuracy, update_cosine
from gradinv.errors import GradinvError
from gradinv.fl import Protocol, bound_generator, forward, loss_fn
from gradinv.models import build_model
from gradinv.options import describe

HAS_OPACUS = True
try:
    import opacus  # noqa: F401
except ImportError:  # pragma: no cover - the extra is optional
    HAS_OPACUS = False
needs_opacus = pytest.mark.skipif(not HAS_OPACUS, reason="opacus extra not installed")

FEDAVG = Protocol("fedavg", local_epochs=2, local_lr=0.1, local_batch_size=2)


def _round(dtype=torch.float32, batch=4, protocol=None, seed=0, model=None, size=12):
    torch.manual_seed(0)
    model = model or build_model("lenet", (1, size, size), 10)
    model = model.to(dtype)
    x = torch.randn(batch, 1, size, size, dtype=dtype)
    y = torch.arange(batch) % 10
    return ClientRound.start(model, x, y, protocol, seed=seed)


def _rnd(seed=0):
    """A bare round for post-processing defenses: only the generator matters."""
    return _round(seed=seed)


def _dummy(dtype=torch.float64, **tensors):
    return {k: torch.tensor(v, dtype=dtype) for k, v in tensors.items()}


# --- clip, prune, sign, quantize, noise: hand-computed cases -------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clip_scales_the_global_norm_exactly(dtype):
    update = _dummy(dtype, a=[3.0, 0.0], b=[[4.0]])  # ‖g‖ = 5 over both tensors
    out = make_defense("clip", max_norm=1.0).apply(update, _rnd())
    assert torch.allclose(out["a"], torch.tensor([0.6, 0.0], dtype=dtype), atol=1e-7)
    assert torch.allclose(out["b"], torch.tensor([[0.8]], dtype=dtype), atol=1e-7)
    norm = math.sqrt(sum(float((v.double() ** 2).sum()) for v in out.values()))
    assert abs(norm - 1.0) < 1e-6 and out["a"].dtype == dtype
    same = make_defense("clip", max_norm=10.0).apply(update, _rnd())  # inside the ball: untouched
    assert all(torch.equal(same[k], update[k]) for k in update)
    zero = make_defense("clip").apply(_dummy(dtype, a=[0.0, 0.0]), _rnd())
    assert torch.equal(zero["a"], torch.zeros(2, dtype=dtype))


def test_prune_per_tensor_zeroes_the_smallest_magnitudes():
    update = _dummy(a=[5.0, -1.0, 3.0, -2.0, 4.0, 0.5], b=[[1.0, 1.0], [1.0, 1.0]])
    out = Prune(ratio=0.5).apply(update, _rnd())
    assert out["a"].tolist() == [5.0, 0.0, 3.0, 0.0, 4.0, 0.0]
    # Ties: equal magnitudes are pruned in position order (lower flat index first).
    assert out["b"].tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_prune_global_uses_one_threshold_for_the_whole_update():
    update = _dummy(a=[1.0, 4.0], b=[2.0, 3.0, 0.5])
    out = Prune(ratio=0.4, scope="global").apply(update, _rnd())  # 2 of 5 entries
    assert out["a"].tolist() == [0.0, 4.0] and out["b"].tolist() == [2.0, 3.0, 0.0]
    tied = Prune(ratio=0.25, scope="global").apply(_dummy(a=[1.0, 2.0], b=[1.0, 2.0]), _rnd())
    assert tied["a"].tolist() == [0.0, 2.0] and tied["b"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("scope", ["tensor", "global"])
def test_prune_count_is_exact(scope):
    g = torch.Generator().manual_seed(0)
    update = {"w": torch.randn(30, 33, generator=g), "b": torch.randn(10, generator=g)}
    out = Prune(ratio=0.9, scope=scope).apply(update, _rnd())
    zeros = {k: int((v == 0).sum()) for k, v in out.items()}
    if scope == "tensor":
        assert zeros == {"w": 891, "b": 9}
    else:
        assert sum(zeros.values()) == 900  # round(0.9 · 1000)
        kept = torch.cat([v[v != 0].abs() for v in out.values()])
        dropped = torch.cat([update[k][out[k] == 0].abs() for k in out])
        assert kept.min() >= dropped.max()


def test_sign():
    out = make_defense("sign").apply(_dummy(a=[-2.0, 0.0, 3.0, -1e-9]), _rnd())
    assert out["a"].tolist() == [-1.0, 0.0, 1.0, -1.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quantize_outputs_only_grid_levels(dtype):
    g = _dummy(dtype, a=[-1.0, -0.5, 0.2, 1.0, 0.9, -0.05])
    out = make_defense("quantize", bits=2).apply(g, _rnd())["a"]
    levels = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0], dtype=dtype)  # 2^2 levels, Δ = 2/3
    assert all(torch.isclose(levels, v, atol=1e-6).any() for v in out)
    assert out[0] == -1.0 and abs(float(out[3]) - 1.0) < 1e-6  # the ends are exact
    # each entry goes to one of its two neighbouring levels
    assert -1.0 <= out[1] <= -1 / 3 + 1e-6 and -1 / 3 - 1e-6 <= out[2] <= 1 / 3 + 1e-6


def test_quantize_is_unbiased_in_expectation():
    g = _dummy(torch.float64, a=[-1.0, -0.5, 0.2, 1.0, 0.9, -0.05, 0.0])
    q = make_defense("quantize", bits=2)
    draws = torch.stack([q.apply(g, _rnd_gen(s))["a"] for s in range(4000)])
    # per entry std of one draw <= Δ/2 = 1/3; of the mean over 4000 draws <= 0.0053
    assert torch.allclose(draws.mean(0), g["a"], atol=0.025)
    assert draws.std(0)[0] == 0 and draws.std(0)[3] == 0  # end levels are deterministic


class _GenRound:
    def __init__(self, seed):
        self.generator = torch.Generator().manual_seed(seed)


def _rnd_gen(seed):
    return _GenRound(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_and_laplace_have_the_set_spread(dtype):
    zero = {"a": torch.zeros(200_000, dtype=dtype), "b": torch.zeros(3, 4, dtype=dtype)}
    gauss = make_defense("noise", std=0.01).apply(zero, _rnd_gen(1))
    assert abs(float(gauss["a"].std()) - 0.01) < 2e-4 and abs(float(gauss["a"].mean())) < 1e-4
    lap = make_defense("laplace", scale=0.01).apply(zero, _rnd_gen(1))["a"]
    assert abs(float(lap.std()) - math.sqrt(2) * 0.01) < 3e-4  # std √2·b
    assert abs(float(lap.abs().mean()) - 0.01) < 2e-4  # E|X| = b
    assert gauss["a"].dtype == dtype and lap.dtype == dtype and gauss["b"].shape == (3, 4)


# --- every registered defense: contract ----------------------------------------------------------


@pytest.mark.parametrize("name", DEFENSES.names())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("protocol", [Protocol(), FEDAVG], ids=["fedsgd", "fedavg"])
def test_every_defense_keeps_names_shapes_dtype_and_is_seeded(name, dtype, protocol):
    if name == "dpsgd" and not HAS_OPACUS:
        pytest.skip("opacus extra not installed")
    defense = make_defense(name)
    r = _round(dtype, protocol=protocol)
    model = wrap(defense, r.model)
    a = defended_update(defense, ClientRound.start(model, r.x, r.targets, protocol, seed=3))
    b = defended_update(defense, ClientRound.start(model, r.x, r.targets, protocol, seed=3))
    c = defended_update(defense, ClientRound.start(model, r.x, r.targets, protocol, seed=4))
    params = dict(model.named_parameters())
    assert set(a) == set(params)
    for k, v in a.items():
        assert v.shape == params[k].shape and v.dtype == dtype and torch.isfinite(v).all()
        assert torch.equal(v, b[k])  # same seed, same defended update
    random = {"noise", "laplace", "quantize", "dpsgd", "precode"}
    assert any(not torch.equal(a[k], c[k]) for k in a) == (name in random)


def test_parse_defense_and_dict_round_trip():
    d = parse_defense("prune:ratio=0.9,scope=global")
    assert isinstance(d, Prune) and d.ratio == 0.9 and d.scope == "global"
    assert d.to_dict() == {"name": "prune", "ratio": 0.9, "scope": "global"}
    assert parse_defense("noise:std=0.01").std == 0.01
    assert parse_defense("sign").to_dict() == {"name": "sign"}
    for name in DEFENSES:
        defense = make_defense(name)
        assert Defense.from_dict(defense.to_dict()) == defense


@pytest.mark.parametrize(
    "spec, words",
    [
        ("prunex", ["clip", "dpsgd", "noise", "precode", "prune", "sign", "soteria"]),
        ("prune:foo=1", ["ratio", "scope"]),
        ("prune:scope=layer", ["tensor", "global"]),
        ("prune:ratio=1.5", ["[0, 1]"]),
        ("noise:std=abc", ["float"]),
        ("noise:std", ["KEY=VALUE"]),
        (":std=1", ["NAME"]),
    ],
)
def test_parse_defense_errors_are_one_line_and_name_valid_choices(spec, words):
    with pytest.raises(GradinvError) as info:
        parse_defense(spec)
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_direct_construction_is_validated():
    with pytest.raises(GradinvError, match="ratio"):
        Prune(ratio=2.0)


def test_every_option_is_documented():
    for name in DEFENSES:
        cls = DEFENSES.get(name)
        assert DEFENSES.describe()[name], name
        for info in describe(cls):
            assert info.help.strip(), f"{name}.{info.name} has no help"


# --- simulate / informative ----------------------------------------------------------------------


def test_simulate_of_clip_and_prune_reproduces_the_defense():
    r = _round(torch.float64)
    clean = defended_update(None, r)
    for spec in ["clip:max_norm=0.01", "clip:max_norm=100", "prune:ratio=0.7",
                 "prune:ratio=0.9,scope=global"]:  # fmt: skip
        defense = parse_defense(spec)
        observed = defense.apply(clean, r)
        simulated = defense.simulate(clean, observed)
        for k in clean:
            assert torch.allclose(simulated[k], observed[k], rtol=1e-12, atol=1e-15), spec
    # differentiable in the update
    u = {k: v.clone().requires_grad_(True) for k, v in clean.items()}
    out = parse_defense("clip:max_norm=0.01").simulate(
        u, parse_defense("clip:max_norm=0.01").apply(clean, r)
    )
    sum(v.sum() for v in out.values()).backward()
    assert all(v.grad is not None for v in u.values())


def test_informative_masks():
    observed = {"a": torch.tensor([0.0, 2.0, 0.0]), "b": torch.tensor([[1.0, 0.0], [3.0, 0.0]])}
    # prune: every entry informs (a pruned one bounds |g| by the smallest kept magnitude)
    assert make_defense("prune").informative(observed) is None
    assert make_defense("noise").informative(observed) is None
    sot = make_defense("soteria").informative(observed)  # "b" is the last 2-D tensor
    assert sot["b"].tolist() == [[True, False], [True, False]] and sot["a"].all()


@pytest.mark.parametrize("scope", ["tensor", "global"])
def test_prune_simulate_uses_the_bound_on_pruned_entries(scope):
    g = torch.Generator().manual_seed(0)
    clean = {"w": torch.randn(40, generator=g, dtype=torch.float64),
             "b": torch.randn(10, generator=g, dtype=torch.float64)}  # fmt: skip
    defense = Prune(ratio=0.7, scope=scope)
    observed = defense.apply(clean, _rnd())
    kept = {k: v != 0 for k, v in observed.items()}
    taus = {k: float(v[kept[k]].abs().min()) for k, v in observed.items()}
    if scope == "global":
        taus = dict.fromkeys(taus, min(taus.values()))
    # any candidate agreeing on the kept entries and within ±τ on the pruned ones simulates to
    # the observation exactly; the true update is one of them
    within = {k: torch.where(kept[k], v, (2 * torch.rand(v.shape, generator=g,
              dtype=v.dtype) - 1) * taus[k]) for k, v in clean.items()}  # fmt: skip
    for candidate in (clean, within):
        sim = defense.simulate(candidate, observed)
        assert all(torch.equal(sim[k], observed[k]) for k in clean)
    # a pruned entry made too large is compared by its excess over τ
    pruned = int(torch.nonzero(~kept["w"])[0])
    bigger = {k: v.clone() for k, v in clean.items()}
    bigger["w"][pruned] = taus["w"] + 0.5
    assert float(defense.simulate(bigger, observed)["w"][pruned]) == pytest.approx(0.5)
    # nothing kept in a tensor: no bound, nothing compared there
    empty = Prune(ratio=1.0).apply(clean, _rnd())
    assert all(float(v.abs().max()) == 0 for v in Prune(ratio=1.0).simulate(clean, empty).values())


def test_sign_and_quantize_simulate():
    g = {"a": torch.tensor([-2.0, 0.5, 3.0]), "b": torch.tensor([0.1, -0.1])}
    sim = make_defense("sign").simulate(g, {k: torch.sign(v) for k, v in g.items()})
    assert all(torch.equal(torch.sign(sim[k]), torch.sign(g[k])) for k in g)
    assert all(sim[k].abs().max() <= 1 for k in g)
    observed = {"a": torch.tensor([-1.0, 1.0, 1.0]), "b": torch.tensor([0.1, 0.0])}
    q = make_defense("quantize").simulate(g, observed)
    assert q["a"].tolist() == [-1.0, 0.5, 1.0] and torch.allclose(q["b"], torch.tensor([0.1, -0.1]))


# --- Soteria -------------------------------------------------------------------------------------


def _reference_scores(r: ClientRound) -> torch.Tensor:
    """Σ_i ‖∂r_if/∂x_i‖ / |r_if|, one sample and one feature at a time (LeNet: body = model[:-1])."""
    body = r.model[:-1]
    scores = torch.zeros(r.model[-1].in_features, dtype=torch.float64)
    for i in range(r.x.shape[0]):
        xi = r.x[i : i + 1].clone().requires_grad_(True)
        feats = body(xi)[0]
        for f in range(feats.numel()):
            (g,) = torch.autograd.grad(feats[f], xi, retain_graph=True)
            scores[f] += (g.norm() / feats[f].abs()).item()
    return scores


def test_soteria_prunes_exactly_ratio_columns_with_the_lowest_scores():
    r = _round(torch.float64, batch=2)  # LeNet 12×12: 108 features of sigmoid outputs (non-zero)
    clean = defended_update(None, r)
    out = make_defense("soteria", ratio=0.25).apply(clean, r)
    key = "7.weight"
    zero_cols = (out[key] == 0).all(dim=0)
    assert int(zero_cols.sum()) == 27  # round(0.25 · 108)
    assert torch.equal(out[key][:, ~zero_cols], clean[key][:, ~zero_cols])
    assert all(torch.equal(out[k], clean[k]) for k in clean if k != key)
    expected = torch.sort(_reference_scores(r), stable=True).indices[:27]
    assert set(torch.nonzero(zero_cols).flatten().tolist()) == set(expected.tolist())
    observed = out
    sim = make_defense("soteria").simulate(clean, observed)
    assert all(torch.equal(sim[k], out[k]) for k in clean)


# --- PRECODE -------------------------------------------------------------------------------------


def test_precode_wrapper_keeps_shape_and_is_deterministic_given_the_generator():
    torch.manual_seed(0)
    model = build_model("lenet", (1, 12, 12), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    defense = make_defense("precode", latent=16)
    wrapped = defense.wrap_model(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    assert "7.classifier.weight" in dict(wrapped.named_parameters())
    x = torch.randn(3, 1, 12, 12)

    def logits(seed):
        with bound_generator(wrapped, torch.Generator().manual_seed(seed)):
            return wrapped.train()(x)

    assert logits(1).shape == model(x).shape == (3, 10)
    assert torch.equal(logits(1), logits(1)) and not torch.equal(logits(1), logits(2))
    assert torch.equal(wrapped.eval()(x), wrapped.eval()(x))  # eval: z = μ
    again = make_defense("precode", latent=16).wrap_model(model)  # seeded initialisation
    assert all(
        torch.equal(a, b) for a, b in zip(wrapped.parameters(), again.parameters(), strict=True)
    )


@pytest.mark.parametrize("train", [False, True])
def test_precode_update_is_the_gradient_of_loss_plus_beta_kl(train):
    torch.manual_seed(0)
    model = build_model("lenet", (1, 12, 12), 10).double()
    defense = make_defense("precode", latent=8, beta=0.5)
    wrapped = defense.wrap_model(model).train(train)
    x, y = torch.randn(3, 1, 12, 12, dtype=torch.float64), torch.tensor([1, 2, 3])
    got = defended_update(defense, ClientRound.start(wrapped, x, y, seed=5))
    # by hand, with the same ε: z = μ + σ·ε, loss = CE + β · mean KL
    r = ClientRound.start(wrapped, x, y, seed=5)
    p = r.params
    h = forward(wrapped[:7], {k: v for k, v in p.items() if not k.startswith("7.")}, {}, x)
    enc = F.linear(h, p["7.bottleneck.encoder.weight"], p["7.bottleneck.encoder.bias"])
    mu, logvar = enc.chunk(2, dim=-1)
    eps = torch.randn(mu.shape, generator=r.generator, dtype=mu.dtype)
    z = mu + (0.5 * logvar).exp() * eps if train else mu
    hidden = F.linear(z, p["7.bottleneck.decoder.weight"], p["7.bottleneck.decoder.bias"])
    logits = F.linear(hidden, p["7.classifier.weight"], p["7.classifier.bias"])
    loss = F.cross_entropy(logits, y) + 0.5 * kl_divergence(mu, logvar)
    expected = torch.autograd.grad(loss, list(p.values()))
    for k, e in zip(p, expected, strict=True):
        assert torch.allclose(got[k], e, atol=1e-12), k


# --- DP-SGD --------------------------------------------------------------------------------------


def _per_sample_clipped_mean(r: ClientRound, clip: float) -> dict[str, torch.Tensor]:
    names = list(r.params)
    total = {k: torch.zeros_like(v) for k, v in r.params.items()}
    for i in range(r.x.shape[0]):
        loss = loss_fn(forward(r.model, r.params, r.buffers, r.x[i : i + 1]), r.targets[i : i + 1])
        grads = torch.autograd.grad(loss, [r.params[k] for k in names])
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
        factor = min(1.0, clip / float(norm))
        for k, g in zip(names, grads, strict=True):
            total[k] += factor * g
    return {k: v / r.x.shape[0] for k, v in total.items()}


@needs_opacus
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dpsgd_without_noise_is_per_sample_clip_then_mean(dtype):
    r = _round(dtype, batch=6)
    ref_free = _per_sample_clipped_mean(r, 1e9)
    norms = []  # pick C in the middle of the per-sample norms: some samples clipped, some not
    for i in range(6):
        one = _per_sample_clipped_mean(
            ClientRound.start(r.model, r.x[i : i + 1], r.targets[i : i + 1]), 1e9
        )
        norms.append(math.sqrt(sum(float((v.double() ** 2).sum()) for v in one.values())))
    clip = sorted(norms)[3]
    got = defended_update(make_defense("dpsgd", clip=clip, noise=0.0), r)
    ref = _per_sample_clipped_mean(r, clip)
    for k in ref:
        assert torch.allclose(got[k], ref[k], atol=1e-6, rtol=0), k
        assert got[k].dtype == dtype
    assert any(not torch.allclose(ref[k], ref_free[k]) for k in ref)  # clipping did bite


@needs_opacus
def test_dpsgd_noise_std_is_sigma_clip_over_batch():
    r = _round(torch.float64, batch=8, size=16)
    clean = defended_update(make_defense("dpsgd", clip=1.0, noise=0.0), r)
    noisy = defended_update(make_defense("dpsgd", clip=1.0, noise=1.0), r)
    residual = torch.cat([(noisy[k] - clean[k]).flatten() for k in clean])
    assert residual.numel() > 5000
    assert abs(float(residual.std()) - 0.125) < 0.125 * 0.05  # σ·C/B = 1·1/8


@needs_opacus
def test_dpsgd_fedavg_without_noise_or_clipping_is_plain_fedavg():
    r = _round(torch.float64, batch=5, protocol=FEDAVG)
    got = defended_update(make_defense("dpsgd", clip=1e6, noise=0.0), r)
    ref = defended_update(None, r)
    assert all(torch.allclose(got[k], ref[k], atol=1e-10) for k in ref)


@needs_opacus
def test_dpsgd_epsilon_is_finite_positive_and_falls_with_noise():
    eps = [
        make_defense("dpsgd", noise=s).privacy(32, Protocol())["epsilon"] for s in (0.5, 1, 2, 4)
    ]
    assert all(0 < e < math.inf for e in eps) and eps == sorted(eps, reverse=True)
    assert make_defense("dpsgd", noise=0.0).privacy(32, Protocol())["epsilon"] == math.inf
    fedavg = make_defense("dpsgd", noise=2.0).privacy(32, Protocol("fedavg", local_epochs=4))
    # 4 local epochs of σ = 2 compose to one Gaussian of σ = 1
    assert math.isclose(fedavg["epsilon"], eps[1], rel_tol=1e-9) and fedavg["steps"] == 4
    sub = make_defense("dpsgd", noise=1.0, sample_rate=0.01).privacy(32, Protocol())
    assert sub["epsilon"] < eps[1] and sub["delta"] == 1e-5
    assert make_defense("noise").privacy(32, Protocol()) == {}


@needs_opacus
def test_dpsgd_rejects_batchnorm_in_one_line():
    r = _round(model=build_model("convnet", (1, 12, 12), 10, width=2), batch=2)
    with pytest.raises(GradinvError) as info:
        defended_update(make_defense("dpsgd"), r)
    assert "\n" not in str(info.value) and "GroupNorm" in str(info.value)


@needs_opacus
def test_dpsgd_on_a_precode_model_is_seeded():
    defenses = [make_defense("precode", latent=8), make_defense("dpsgd", noise=0.0)]
    r = _round()
    model = wrap(defenses, r.model)
    a = defended_update(defenses, ClientRound.start(model, r.x, r.targets, seed=1))
    b = defended_update(defenses, ClientRound.start(model, r.x, r.targets, seed=1))
    c = defended_update(defenses, ClientRound.start(model, r.x, r.targets, seed=2))
    assert all(torch.equal(a[k], b[k]) for k in a) and any(not torch.equal(a[k], c[k]) for k in a)


def test_two_defenses_computing_the_update_is_an_error():
    class Own(Defense):
        name = "own"

        def client_update(self, round):
            return {k: torch.zeros_like(v) for k, v in round.params.items()}

    with pytest.raises(GradinvError, match="own, own"):
        defended_update([Own(), Own()], _round())


# --- utility -------------------------------------------------------------------------------------


def test_update_cosine():
    a = {"w": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0])}
    assert update_cosine(a, a) == pytest.approx(1.0)
    assert update_cosine(a, {k: -v for k, v in a.items()}) == pytest.approx(-1.0)
    assert update_cosine(a, {"w": torch.tensor([0.0, 2.0]), "b": torch.tensor([0.0])}) == 0.0
    assert update_cosine(a, {k: torch.zeros_like(v) for k, v in a.items()}) == 0.0


def test_fedavg_accuracy_runs_defended_and_is_seeded():
    kw = dict(rounds=2, clients=2, samples_per_client=64, test_size=200, image_size=8,
              local_epochs=1, local_lr=0.1, local_batch_size=32)  # fmt: skip
    plain = fedavg_accuracy("mlp4", "digits", None, model_options={"width": 32}, **kw)
    again = fedavg_accuracy("mlp4", "digits", None, model_options={"width": 32}, **kw)
    assert 0.0 <= plain <= 1.0 and plain == again
    defended = fedavg_accuracy(
        "lenet", "digits", ["clip:max_norm=1", "noise:std=0.001", "precode:latent=8"], **kw
    )
    assert 0.0 <= defended <= 1.0
    with pytest.raises(GradinvError, match="too few"):
        fedavg_accuracy("lenet", "digits", None, clients=100, samples_per_client=100)


@pytest.mark.parametrize("name", ["soteria", "precode", "prune", "quantize", "sign"])
def test_defenses_work_on_a_non_sequential_batchnorm_model(name):
    model = build_model("resnet18", (3, 8, 8), 10, width=2)
    defense = make_defense(name, **({"ratio": 0.5} if name == "soteria" else {}))
    wrapped = wrap(defense, model)
    torch.manual_seed(0)
    x, y = torch.randn(3, 3, 8, 8), torch.tensor([0, 1, 2])
    clean = defended_update(None, ClientRound.start(wrapped, x, y))
    out = defended_update(defense, ClientRound.start(wrapped, x, y))
    assert set(out) == set(clean) and all(out[k].shape == clean[k].shape for k in out)
    if name == "soteria":  # head.2 is the classifier: 8 of its 16 input columns zeroed
        assert int((out["head.2.weight"] == 0).all(dim=0).sum()) == 8
        assert all(torch.equal(out[k], clean[k]) for k in out if k != "head.2.weight")


def test_dpsgd_without_opacus_is_a_one_line_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "opacus", None)  # import opacus -> ImportError
    with pytest.raises(GradinvError, match=r"pip install 'gradinv\[opacus\]'"):
        defended_update(make_defense("dpsgd"), _round())
