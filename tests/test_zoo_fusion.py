"""Table 6's fusion structures (models/fusion_baselines.py): each checked against its formula written out
by hand, its gradients, and its place inside ARGF (the fusion step trains it, the others do not)."""

from __future__ import annotations

import pytest
import torch

from models.base import Batch
from models.fusion import get_fusion, list_fusions
from models.fusion_baselines import LMF_RANK, TFN_DIM
from models.registry import get_model

MODS = ("text", "audio", "video")
TABLE6 = ["concat", "multiply", "weighted_avg", "tfn", "lmf", "dfg"]
K = 5


def codes(n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.tanh(torch.randn(n, K, generator=g)) for m in MODS}


def fusion(name: str):
    torch.manual_seed(0)
    return get_fusion(name, k=K, modalities=MODS, dropout=0.0).eval()


def test_all_table6_rows_are_registered_next_to_gfn() -> None:
    assert set(TABLE6 + ["gfn"]) <= set(list_fusions())


@pytest.mark.parametrize("name", TABLE6)
def test_shapes_and_every_parameter_gets_a_gradient(name: str) -> None:
    f = fusion(name).train()
    c = codes()
    out, extras = f(c)
    assert out.shape == (4, f.out_dim)
    assert f.out_dim == (7 * K if name == "dfg" else K)
    out.pow(2).sum().backward()
    for pname, p in f.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} gets no gradient"


def test_concat_and_multiply_follow_their_formulas() -> None:
    c = codes()
    f = fusion("concat")
    lin = f.fc[1]
    want = torch.tanh(torch.cat([c[m] for m in MODS], -1) @ lin.weight.T + lin.bias)
    torch.testing.assert_close(f(c)[0], want)
    f = fusion("multiply")
    lin = f.fc[1]
    want = torch.tanh((c["text"] * c["audio"] * c["video"]) @ lin.weight.T + lin.bias)
    torch.testing.assert_close(f(c)[0], want)


def test_weighted_average_is_a_convex_combination() -> None:
    f = fusion("weighted_avg")
    with torch.no_grad():
        f.theta.copy_(torch.tensor([1.0, 0.0, -1.0]))
    c = codes()
    w = torch.softmax(torch.tensor([1.0, 0.0, -1.0]), 0)
    out, extras = f(c)
    torch.testing.assert_close(out, w[0] * c["text"] + w[1] * c["audio"] + w[2] * c["video"])
    torch.testing.assert_close(extras["modality_weights"][0], w)


def test_tfn_is_the_outer_product_of_the_projected_codes_with_a_one() -> None:
    f = fusion("tfn")
    c = codes(n=2)
    z = {m: torch.cat([f.proj[m](c[m]), torch.ones(2, 1)], -1) for m in MODS}
    n = TFN_DIM + 1
    outer = torch.zeros(2, n, n, n)
    for b in range(2):
        for i in range(n):
            for j in range(n):
                outer[b, i, j] = z["text"][b, i] * z["audio"][b, j] * z["video"][b]
    lin = f.fc[1]
    torch.testing.assert_close(f(c)[0], torch.tanh(outer.flatten(1) @ lin.weight.T + lin.bias))


def test_lmf_equals_tensor_fusion_with_the_reassembled_low_rank_weight() -> None:
    f = fusion("lmf")
    c = codes()
    z = [torch.cat([c[m], torch.ones(4, 1)], -1) for m in MODS]
    a, b, d = (f.factors[m].detach() for m in MODS)  # [r, K+1, K]
    full = torch.einsum("r,rio,rjo,rlo->ijlo", f.rank_weights.detach(), a, b, d)  # the full weight tensor
    want = torch.tanh(torch.einsum("bi,bj,bl,ijlo->bo", *z, full) + f.bias)
    torch.testing.assert_close(f(c)[0], want, rtol=1e-4, atol=1e-5)
    assert a.shape == (LMF_RANK, K + 1, K)


def test_dfg_vertices_and_efficacies() -> None:
    f = fusion("dfg")
    c = codes()
    out, extras = f(c)
    # 3 bimodal vertices x 2 parents + the trimodal vertex's 6 parents (3 unimodal, 3 bimodal)
    assert len(f.edges) == 12 and extras["efficacies"].shape == (4, 12)
    assert ((extras["efficacies"] > 0) & (extras["efficacies"] < 1)).all()
    # the first three vertices are the unimodal codes themselves
    torch.testing.assert_close(out[:, : 3 * K], torch.cat([c[m] for m in MODS], -1))
    # a bimodal vertex depends only on its two parents
    c2 = dict(c)
    c2["video"] = -c["video"]
    with torch.no_grad():
        f.efficacy[0].weight[:, 2 * K :] = 0  # make the efficacies independent of video too
    la_a = f(c)[0][:, 3 * K : 4 * K]
    la_b = f(c2)[0][:, 3 * K : 4 * K]
    torch.testing.assert_close(la_a, la_b)


@pytest.mark.parametrize("name", TABLE6)
def test_inside_argf_only_the_fusion_step_trains_the_fusion(name: str) -> None:
    dims = {"text": 8, "audio": 6, "video": 7}
    torch.manual_seed(0)
    model = get_model("argf", dims=dims, n_classes=2, k=K, fusion=name)
    assert model.fusion.fusion_name == name
    g = torch.Generator().manual_seed(1)
    batch = Batch({m: torch.randn(8, d, generator=g) for m, d in dims.items()}, torch.arange(8) % 2)
    opts = model.make_optimizers()
    before = {k: v.detach().clone() for k, v in model.fusion.named_parameters()}
    model.step_discriminator(batch, opts["discriminator"])
    model.step_classifier(batch, opts["classifier"])
    for k, v in model.fusion.named_parameters():
        assert torch.equal(v, before[k]), f"{k} changed outside the fusion step"
    model.step_fusion(batch, opts["fusion"])
    changed = [k for k, v in model.fusion.named_parameters() if not torch.equal(v, before[k])]
    assert changed == [k for k, _ in model.fusion.named_parameters()]
    assert model.predict(batch)["logits"].shape == (8, 2)


def test_seeded_fusion_runs_are_identical() -> None:
    a, b = fusion("dfg"), fusion("dfg")
    torch.testing.assert_close(a(codes())[0], b(codes())[0], rtol=0, atol=0)
