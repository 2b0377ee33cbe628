"""The IBQ quantizer (ETT's tokenizer): forward values, argmax of dot products (not L2), the gradient reach of a
downstream loss (spec ett.md checks 1 and 2), its losses, and the VQTokenizer switch."""

import math

import pytest
import torch

from genlab.errors import GenlabError
from genlab.tokenizers.vq import IBQQuantizer, VectorQuantizer, VQTokenizer


def test_forward_is_the_chosen_code_and_the_argmax_of_dot_products():
    torch.manual_seed(0)
    q = IBQQuantizer(64, 8)
    z = torch.randn(2, 8, 4, 4, requires_grad=True)
    zq, ids, losses = q(z)
    cb = q.codebook()
    assert torch.allclose(zq, cb[ids].permute(0, 3, 1, 2), atol=1e-5)  # the STE output's value is the code
    dots = torch.einsum("bdhw,kd->bhwk", z, cb)
    assert torch.equal(ids, dots.argmax(-1))
    with torch.no_grad():
        assert torch.equal(q(z)[0], cb[ids].permute(0, 3, 1, 2))  # without gradients: the hard code itself
    assert set(losses) == {"loss", "ibq", "commit", "codebook", "entropy"} and losses["loss"].requires_grad


def test_dot_product_and_l2_choose_differently_for_codes_of_unequal_norms():
    q = IBQQuantizer(2, 2)
    with torch.no_grad():
        q.embedding.weight.copy_(torch.tensor([[1.0, 0.0], [3.0, 0.0]]))
    z = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    assert q(z)[1].item() == 1  # <z, e_1> = 3 > 1
    vq = VectorQuantizer(2, 2, l2_normalize=False)
    vq.embedding.weight.data.copy_(q.embedding.weight.data)
    assert vq(z)[1].item() == 0  # but e_0 is the nearest by L2


@pytest.mark.parametrize("kind, l2", [("ibq", False), ("ibq", True), ("vq", False)])
def test_a_downstream_loss_reaches_the_encoder_and_with_ibq_every_code(kind, l2):
    torch.manual_seed(1)
    tok = VQTokenizer(in_channels=1, codebook_size=32, codebook_dim=8, quantizer_type=kind, l2_normalize=l2).eval()
    images = torch.rand(2, 1, 16, 16) * 2 - 1
    zq, _, _ = tok.quantize(tok.encoder(images))
    (zq * torch.randn_like(zq)).sum().backward()  # a loss on z_q only, as the LM's caption loss is
    encoder_grad = tok.encoder[0].weight.grad
    code_grad = tok.quantizer.embedding.weight.grad
    assert encoder_grad is not None and encoder_grad.abs().sum() > 0
    if kind == "ibq":
        assert (code_grad.abs().sum(1) > 0).all()  # all K rows, through the soft one-hot
    else:
        assert code_grad is None or code_grad.abs().sum() == 0  # the plain STE never reaches the codebook


def test_the_tokenizer_switch_saves_and_refuses_unknown_quantizers(tmp_path):
    tok = VQTokenizer(in_channels=1, quantizer_type="ibq", l2_normalize=False)
    tok.save_pretrained(tmp_path)
    back = VQTokenizer.from_pretrained(tmp_path)
    assert isinstance(back.quantizer, IBQQuantizer)
    images = torch.rand(3, 1, 16, 16) * 2 - 1
    assert torch.equal(back.encode(images), tok.encode(images))
    with pytest.raises(GenlabError, match="unknown quantizer_type 'fsq'"):
        VQTokenizer(quantizer_type="fsq")


def test_the_entropy_term_rewards_sharp_assignments_spread_over_the_codebook():
    from genlab.tokenizers.vq import IBQQuantizer

    q = IBQQuantizer(codebook_size=4, codebook_dim=2, entropy_temperature=0.01)
    one_code = torch.tensor([[10.0, 0, 0, 0]]).repeat(8, 1)  # every position sharply on code 0
    spread = torch.eye(4).repeat(2, 1) * 10  # sharply on codes 0..3, each twice
    blurred = torch.zeros(8, 4)  # every position undecided
    assert abs(q.entropy_loss(one_code)) < 1e-6
    assert abs(q.entropy_loss(spread) + math.log(4)) < 1e-6  # 0 - H(uniform over 4)
    assert abs(q.entropy_loss(blurred)) < 1e-6  # H(uniform) - H(uniform)
    z = torch.randn(2, 2, 3, 3)
    _, _, losses = q(z)
    assert torch.allclose(losses["loss"], losses["ibq"] + losses["commit"] + 0.25 * losses["codebook"]
                          + 0.05 * losses["entropy"])
    with pytest.raises(GenlabError, match="entropy_temperature"):
        IBQQuantizer(entropy_temperature=0)


def test_the_shipped_shapes_tokenizer_reconstructs_and_uses_its_codebook():
    """tokenizers/ibq-shapes (genlab train ibq-shapes): 25.8 dB PSNR, all 512 codes used, perplexity 478 on the
    2000 test images when shipped; floors with a margin on 500."""
    from pathlib import Path

    from genlab.data import load_dataset
    from genlab.eval.metrics import reconstruction_psnr
    from genlab.tokenizers import load_tokenizer

    tok = load_tokenizer(Path(__file__).resolve().parents[1] / "tokenizers" / "ibq-shapes").eval()
    assert tok.config.quantizer_type == "ibq"
    images = load_dataset("shapes", "test").images[:500]
    with torch.no_grad():
        usage, perplexity = tok.codebook_usage(tok.encode(images))
    assert reconstruction_psnr(tok, images) >= 24.0 and usage >= 0.9 and perplexity >= 300
