"""UCLN: shapes, masking (padding never leaks in), bidirectional context, options, one training step,
seeds, and a short real run on the raw bc-LSTM MOSI features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.base import Batch
from models.registry import get_model
from models.ucln import UCLN


def make_batch(b: int = 3, u: int = 7, d: int = 10, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    lengths = [5, 7, 2][:b] + [u] * max(0, b - 3)
    mask = torch.arange(u).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return Batch({"audio": torch.randn(b, u, d, generator=g)}, torch.randint(0, 2, (b, u), generator=g), mask=mask)


def build(seed: int = 0, **cfg) -> UCLN:
    torch.manual_seed(seed)
    return get_model("ucln", dims={"audio": 10}, n_classes=2, modality="audio", hidden=8, d=6, **cfg)  # type: ignore[return-value]


def test_shapes_and_context_range() -> None:
    model = build()
    out = model.predict(make_batch())
    assert out["logits"].shape == (3, 7, 2)
    assert out["context"].shape == (3, 7, 6)
    assert float(out["context"].abs().max()) <= 1.0  # tanh
    assert UCLN.input_kind == "video"


def test_padding_never_reaches_real_utterances_or_the_loss() -> None:
    model = build().eval()
    batch = make_batch()
    out = model(batch)
    junk = Batch({"audio": torch.where(batch.mask.unsqueeze(-1), batch.x["audio"], 1e3)},  # type: ignore[union-attr]
                 torch.where(batch.mask, batch.y, 1 - batch.y), mask=batch.mask)  # type: ignore[arg-type]
    out2 = model(junk)
    m = batch.mask
    torch.testing.assert_close(out2["context"][m], out["context"][m])  # type: ignore[index]
    torch.testing.assert_close(model.loss(junk, out2), model.loss(batch, out))
    # the loss is the masked cross-entropy plus the bc-LSTM's L2 on the context kernel
    ce = torch.nn.functional.cross_entropy(out["logits"][m], batch.y[m])  # type: ignore[index]
    torch.testing.assert_close(model.loss(batch, out), ce + 1e-3 * model.context.weight.pow(2).sum())


def test_context_is_bidirectional() -> None:
    model = build().eval()
    batch = make_batch()
    later = batch.x["audio"].clone()
    later[1, 5] += 1.0  # change a later utterance of video 1
    out, out2 = model(batch), model(Batch({"audio": later}, batch.y, mask=batch.mask))
    assert not torch.allclose(out["context"][1, 0], out2["context"][1, 0])  # the past sees the future
    torch.testing.assert_close(out["context"][0], out2["context"][0])  # other videos untouched


def test_mask_must_be_a_prefix() -> None:
    batch = make_batch()
    batch.mask[0, 1] = False  # type: ignore[index]
    with pytest.raises(ValueError, match="prefix"):
        build()(batch)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_step_changes_every_parameter(cell: str) -> None:
    model = build(cell=cell)
    assert isinstance(model.rnn, torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    logs = model.training_step(make_batch(), model.make_optimizers())
    assert np.isfinite(logs["loss"])
    unchanged = [n for n, p in model.named_parameters() if torch.equal(before[n], p.detach())]
    assert unchanged == []


def test_optimiser_options() -> None:
    opt = build().make_optimizers()["all"]
    assert isinstance(opt, torch.optim.Adadelta) and opt.defaults["lr"] == 1.0
    opt = build(optimizer="adam").make_optimizers()["all"]
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == 1e-4
    assert build(optimizer="adam", lr=3e-3).make_optimizers()["all"].defaults["lr"] == 3e-3


def test_missing_modality_input_is_zeroed() -> None:
    model = build().eval()
    batch = make_batch()
    present = torch.tensor([True, False, True])
    zeroed = Batch({"audio": batch.x["audio"] * present.view(3, 1, 1).float()}, batch.y, mask=batch.mask)
    with_flag = Batch(batch.x, batch.y, {"audio": present}, batch.mask)
    torch.testing.assert_close(model(with_flag)["context"], model(zeroed)["context"])
    nan = Batch({"audio": torch.where(present.view(3, 1, 1), batch.x["audio"], torch.nan)}, batch.y,
                {"audio": present}, batch.mask)
    torch.testing.assert_close(model(nan)["context"], model(zeroed)["context"])


def test_identical_seeds_identical_outputs_and_wrong_modality_refused() -> None:
    outs = []
    for _ in range(2):
        model = build(seed=5)
        torch.manual_seed(1)
        model.training_step(make_batch(), model.make_optimizers())
        outs.append(model.predict(make_batch(seed=2))["context"])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="not among"):
        get_model("ucln", dims={"text": 4}, n_classes=2, modality="audio")


def _videos(npz: dict, split: str, modality: str, mean: np.ndarray, std: np.ndarray) -> Batch:
    """Group the utterance rows of one split into padded videos (segment ids are '<video>_<n>')."""
    rows = np.flatnonzero(npz["split"] == split)
    vids: dict[str, list[tuple[int, int]]] = {}
    for r in rows:
        vid, idx = str(npz["segment_id"][r]).rsplit("_", 1)
        vids.setdefault(vid, []).append((int(idx), r))
    u = max(len(v) for v in vids.values())
    x = np.zeros((len(vids), u, npz[modality].shape[1]), np.float32)
    y = np.zeros((len(vids), u), np.int64)
    mask = np.zeros((len(vids), u), bool)
    for i, items in enumerate(vids.values()):
        order = [r for _, r in sorted(items)]
        x[i, : len(order)] = (npz[modality][order] - mean) / std
        y[i, : len(order)] = npz["label_bin"][order]
        mask[i, : len(order)] = True
    return Batch({modality: torch.from_numpy(x)}, torch.from_numpy(y), mask=torch.from_numpy(mask))


def test_short_real_run_on_raw_mosi_text_features_learns(mosi_dir) -> None:
    with np.load(mosi_dir / "bclstm_raw_features.dev.npz", allow_pickle=False) as z:
        npz = {k: z[k] for k in z.files}
    tr = npz["split"] == "train"
    mean, std = npz["text"][tr].mean(0), npz["text"][tr].std(0) + 1e-6
    train, valid = _videos(npz, "train", "text", mean, std), _videos(npz, "valid", "text", mean, std)
    assert train.y.shape[0] == 62 and int(valid.mask.sum()) == 240  # type: ignore[union-attr]
    torch.manual_seed(0)
    model = get_model("ucln", dims={"text": 100}, n_classes=2, modality="text", optimizer="adam", lr=1e-3)
    opts = model.make_optimizers()
    g = torch.Generator().manual_seed(0)
    for _epoch in range(8):
        for idx in torch.randperm(62, generator=g).split(20):
            model.training_step(Batch({"text": train.x["text"][idx]}, train.y[idx], mask=train.mask[idx]), opts)  # type: ignore[index]
    out = model.predict(valid)
    m = valid.mask
    acc = float((out["logits"][m].argmax(-1) == valid.y[m]).float().mean())  # type: ignore[index]
    majority = float(valid.y[m].float().mean())  # type: ignore[index]
    assert acc > max(majority, 1 - majority) + 0.05, (acc, majority)
    assert out["context"].shape == (10, valid.x["text"].shape[1], 50)
