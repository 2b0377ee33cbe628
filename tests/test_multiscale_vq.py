"""VAR's multi-scale residual VQ tokenizer (spec mvar.md §2.1, §10 check 6): id layouts, teacher-forcing inputs
equal to the area-downsampled partial reconstructions, the pyramid decoding to the quantiser's own f_hat, the phi
ticks, save / load, dead-code restarts and one-line errors. Untrained tiny tokenizers: no weights needed."""

import pytest
import torch
import torch.nn.functional as F

from genlab.errors import GenlabError
from genlab.tokenizers import MultiScaleVQTokenizer, TOKENIZERS, load_tokenizer


def tokenizer(**kw):
    torch.manual_seed(0)
    return MultiScaleVQTokenizer.from_preset("tiny", in_channels=1, **kw).eval()


def images(b=3, side=16, seed=1):
    return torch.rand(b, 1, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_layouts_and_sizes():
    tok = tokenizer()
    assert TOKENIZERS["multiscale_vq"] is MultiScaleVQTokenizer
    assert tok.num_tokens == 1 + 4 + 9 + 16 + 36 + 64 == 130 and tok.image_size == 16 and tok.latent_side == 8
    ids = tok.encode(images())
    assert ids.shape == (3, 130) and ids.dtype == torch.long
    idx_bl = tok.split_ids(ids)
    assert [x.shape[1] for x in idx_bl] == [1, 4, 9, 16, 36, 64]
    assert torch.equal(torch.cat(idx_bl, 1), ids) and torch.equal(torch.cat(tok.img_to_idx_bl(images()), 1), ids)
    assert tok.decode(ids).shape == (3, 1, 16, 16) and tok.latent_shape(16) == (16, 8, 8)
    assert MultiScaleVQTokenizer.from_preset("tiny-f4").image_size == 32


def test_teacher_inputs_are_the_downsampled_partial_reconstructions_and_the_pyramid_decodes_to_f_hat():
    tok = tokenizer()
    with torch.no_grad():
        f = tok.latents(images())
        idx_bl, f_hats = tok.quantize(f)
        x = tok.idx_bl_to_var_input(idx_bl)
        assert x.shape == (3, 130 - 1, 16)  # no input for the first scale: it gets the SOS token
        start = 0
        for k, p in enumerate(tok.patch_nums[1:]):
            expected = F.interpolate(f_hats[k], size=(p, p), mode="area").flatten(2).transpose(1, 2)
            assert torch.allclose(x[:, start:start + p * p], expected, atol=1e-6)
            start += p * p
        assert torch.equal(tok.idx_bl_to_fhat(idx_bl), f_hats[-1])  # decoding the ids rebuilds f_hat exactly
        partial = tok.idx_bl_to_partial_imgs(idx_bl)  # the decode after each scale
        assert len(partial) == 6 and all(torch.allclose(p, tok.fhat_to_img(fh), atol=1e-5)
                                         for p, fh in zip(partial, f_hats))
        assert torch.allclose(partial[-1], tok.idx_bl_to_img(idx_bl), atol=1e-5)
        # the ids are the nearest codes of each scale's residual: re-encoding finds the same ids
        assert torch.equal(torch.cat(tok.quantize(f)[0], 1), torch.cat(idx_bl, 1))


def test_phi_of_each_scale_is_the_nearest_tick():
    tok = tokenizer()
    # 6 scales at k / 5 = 0, .2, .4, .6, .8, 1 against ticks 1/12, 1/3 + 1/12, ... : phis 0, 0, 1, 2, 3, 3
    assert [list(tok.phis).index(tok.phi(k)) for k in range(6)] == \
        [0, 0, 1, 2, 3, 3]
    one = MultiScaleVQTokenizer(in_channels=1, num_phi=1)
    assert all(one.phi(k) is one.phis[0] for k in range(6))


def test_save_load_round_trip(tmp_path):
    tok = tokenizer()
    tok.code_hits[:5] = 0.5
    tok.save_pretrained(tmp_path / "msvq")
    back = load_tokenizer(tmp_path / "msvq").eval()
    assert isinstance(back, MultiScaleVQTokenizer) and back.patch_nums == tok.patch_nums
    assert torch.equal(back.code_hits, tok.code_hits)  # saved, so a resumed training restarts the same codes
    x = images()
    with torch.no_grad():
        assert torch.equal(back.encode(x), tok.encode(x)) and torch.equal(back.decode(tok.encode(x)),
                                                                            tok.decode(tok.encode(x)))


def test_training_loss_has_gradients_everywhere_and_dead_codes_restart():
    tok = tokenizer(dead_code_threshold=0.5).train()
    tok.code_hits.fill_(0.0)  # every code looks dead unless this batch picks it often
    before = tok.embedding.weight.detach().clone()
    out = tok.training_loss(images(8), generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert set(out) >= {"loss", "recon", "vq", "usage", "perplexity"} and torch.isfinite(out["loss"])
    for name in ("encoder.conv_in.weight", "decoder.conv_out.weight", "embedding.weight", "phis.0.weight",
                 "quant_conv.weight"):
        assert tok.get_parameter(name).grad is not None and tok.get_parameter(name).grad.abs().sum() > 0, name
    moved = (tok.embedding.weight.detach() != before).any(1)
    assert moved.sum() > tok.codebook_size // 2  # restarted at latent vectors of the batch
    assert (tok.code_hits[moved] == 1.0).all()
    tok.eval()
    frozen = tok.embedding.weight.detach().clone()
    tok.training_loss(images(8))
    assert torch.equal(tok.embedding.weight, frozen)  # no restarts outside training


@pytest.mark.parametrize("kw, message", [
    ({"patch_nums": (1, 3, 2, 8)}, "strictly increasing"),
    ({"patch_nums": (0, 2, 8)}, "strictly increasing"),
    ({"patch_nums": "abc"}, "sequence of integers"),
    ({"phi_ratio": 1.5}, "phi_ratio"),
    ({"block_out_channels": (30, 64)}, "multiples of norm_num_groups"),
])
def test_bad_configs_are_one_line_errors(kw, message):
    with pytest.raises(GenlabError, match=message):
        MultiScaleVQTokenizer(in_channels=1, **kw)


def test_bad_inputs_are_one_line_errors():
    tok = tokenizer()
    with pytest.raises(GenlabError, match=r"end at 8, so images must be 16 px, got \(32, 32\)"):
        tok.encode(images(side=32))
    with pytest.raises(GenlabError, match=r"must be \(B, 130\)"):
        tok.decode(torch.zeros(2, 129, dtype=torch.long))
    with pytest.raises(GenlabError, match=r"lie in \[0, 512\)"):
        tok.decode(torch.full((2, 130), 512))
    with pytest.raises(GenlabError, match="expected 6 scales"):
        tok.decode([torch.zeros(2, 1, dtype=torch.long)])
    with pytest.raises(GenlabError, match=r"scale 1 ids must be an integer \(B, 4\)"):
        tok.decode([torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long)] +
                   [torch.zeros(2, p * p, dtype=torch.long) for p in (3, 4, 6, 8)])
    with pytest.raises(GenlabError, match="images must be 16 px"):
        tok.latent_shape(32)


@pytest.mark.parametrize("dataset", ["digits", "fashion"])
def test_the_shipped_tokenizer_reconstructs_f_better_with_every_scale(dataset):
    """Spec §10 check 6 on the trained tokenizers (tokenizers/msvq-digits, tokenizers/msvq-fashion): the partial
    reconstruction's error of the latent f never rises from one scale to the next (typical of a trained residual
    quantiser, not a theorem), and the full pyramid gets much closer than the first scale."""
    from pathlib import Path

    from genlab.data import load_dataset

    tok = load_tokenizer(Path(__file__).resolve().parents[1] / "tokenizers" / f"msvq-{dataset}").eval()
    x = load_dataset(dataset, split="test", image_size=tok.image_size).images[:128]
    with torch.no_grad():
        f = tok.latents(x)
        _, f_hats = tok.quantize(f)
    mse = [float(((f - fh) ** 2).mean()) for fh in f_hats]
    assert all(b <= a for a, b in zip(mse, mse[1:])), mse
    assert mse[-1] < 0.2 * mse[0], mse
