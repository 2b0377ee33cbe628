import json
import os

import pytest
import torch

from genlab.errors import GenlabError
from genlab.models import DiTModel
from genlab.schedulers import FlowMatchScheduler


def tiny(**kw):
    return DiTModel.from_preset("test", sample_size=8, in_channels=1, patch_size=2, num_classes=3, **kw)


def test_forward_contract_and_zero_output_at_init():
    model = tiny()
    x = torch.randn(4, 1, 8, 8)
    v = model(x, torch.rand(4), torch.tensor([0, 1, 2, 3])).sample  # 3 = the null class
    assert v.shape == x.shape
    assert torch.equal(v, torch.zeros_like(v))  # final layer is zero-initialised


def test_initial_flow_matching_loss_is_E_x2_plus_1():
    """v_hat = 0 at init, so E|v|^2 = E|x - e|^2 = E[x^2] + 1."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(512, 1, 8, 8, generator=g) * 2 - 1
    s = FlowMatchScheduler()
    noise = torch.randn(x.shape, generator=g)
    t = s.sample_t(512, g)
    v_hat = tiny()(s.add_noise(x, noise, t), t, torch.zeros(512, dtype=torch.long)).sample
    loss = (v_hat - s.velocity_target(x, noise)).pow(2).mean().item()
    assert abs(loss - (x.pow(2).mean().item() + 1)) < 0.02


def test_conditioning_changes_output_after_training_step():
    torch.manual_seed(0)
    model = tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randn(8, 1, 8, 8)
    for _ in range(3):
        loss = (model(x, torch.rand(8), torch.randint(0, 3, (8,))).sample - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    t = torch.full((2,), 0.5)
    a = model(x[:2], t, torch.tensor([0, 0])).sample
    b = model(x[:2], t, torch.tensor([1, 1])).sample
    c = model(x[:2], torch.full((2,), 0.9), torch.tensor([0, 0])).sample
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = tiny()
    s = FlowMatchScheduler()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(8) % 3
    x = (torch.rand(3, 1, 8, 8, generator=g) * 2 - 1)[y]  # the label determines the image: loss can approach 0
    losses = []
    for _ in range(150):
        noise, t = torch.randn(x.shape, generator=g), s.sample_t(8, g)
        loss = (model(s.add_noise(x, noise, t), t, y).sample - (x - noise)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) / 20 < 0.6 * sum(losses[:5]) / 5


def test_preset_parameter_counts_on_meta_device():
    with torch.device("meta"):
        base = DiTModel.from_preset("B", sample_size=32, in_channels=4, patch_size=2, num_classes=1000)
        xl = DiTModel.from_preset("XL", sample_size=32, in_channels=4, patch_size=2, num_classes=1000)
    # DDT-B/2 and DDT-XL/2 (same blocks plus a second patch embedder and token-wise decoder conditioning) have
    # 130.26M and 674.65M parameters; the unsplit DiT with the same blocks must be within a fraction of that.
    assert abs(base.num_parameters / 130.26e6 - 1) < 0.01
    assert abs(xl.num_parameters / 674.65e6 - 1) < 0.01


def test_bad_configs_and_inputs():
    with pytest.raises(GenlabError, match="divisible by 4"):
        DiTModel(hidden_size=60, num_heads=6)  # head dim 10
    with pytest.raises(GenlabError, match="patch_size"):
        DiTModel(sample_size=10, patch_size=4)
    with pytest.raises(GenlabError, match="unknown DiT preset"):
        DiTModel.from_preset("huge")
    with pytest.raises(GenlabError, match="expects x of shape"):
        tiny()(torch.randn(2, 3, 8, 8), torch.rand(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(GenlabError, match="class_names"):
        DiTModel(num_classes=3, class_names=["a"])


def test_save_load_roundtrip_and_corrupt_files(tmp_path):
    model = tiny(class_names=["a", "b", "c"])
    torch.nn.init.normal_(model.final_layer.linear.weight)
    model.save_pretrained(tmp_path / "m")
    loaded = DiTModel.from_pretrained(tmp_path / "m")
    assert loaded.config.class_names == ["a", "b", "c"]
    x, t, y = torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, 2])
    assert torch.equal(loaded(x, t, y).sample, model(x, t, y).sample)

    weights = tmp_path / "m" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(GenlabError, match="truncated"):
        DiTModel.from_pretrained(tmp_path / "m")

    weights.write_bytes(data)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["hidden_size"] = 128
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(GenlabError, match="do not match"):
        DiTModel.from_pretrained(tmp_path / "m")

    with pytest.raises(GenlabError, match="no such folder"):
        DiTModel.from_pretrained(tmp_path / "missing")
    os.remove(weights)
    with pytest.raises(GenlabError, match="missing weights"):
        DiTModel.from_pretrained(tmp_path / "m")
