"""The IBQ quantizer (ETT's tokenizer): forward values, argmax of dot products (not L2), the gradient reach of a
downstream loss (spec ett.md checks 1 and 2), its losses, and the VQTokenizer switch."""

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
    assert set(losses) == {"loss", "ibq", "commit", "codebook"} and losses["loss"].requires_grad


def test_dot_product_and_l2_choose_differently_for_codes_of_unequal_norms():
    q = IBQQuantizer(2, 2)
    with torch.no_grad():
        q.embedding.weight.copy_(torch.tensor([[1.0, 0.0], [3.0, 0.0]]))
    z = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    assert q(z)[1].item() == 1  # <z, e_1> = 3 > 1
    vq = VectorQuantizer(2, 2, l2_normalize=False)
    vq.embedding.weight.data.copy_(q.embedding.weight.data)
    assert vq(z)[1].item() == 0  # but e_0 is the nearest by L2


@pytest.mark.parametrize("kind", ["ibq", "vq"])
def test_a_downstream_loss_reaches_the_encoder_and_with_ibq_every_code(kind):
    torch.manual_seed(1)
    tok = VQTokenizer(in_channels=1, codebook_size=32, codebook_dim=8, quantizer_type=kind, l2_normalize=False).eval()
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
