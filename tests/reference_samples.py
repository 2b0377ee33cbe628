"""Reference samples of every shipped pipeline, saved once so that refactors can prove they change no number.

`python tests/reference_samples.py` (one torch thread, as the test suite runs) samples each call below and writes
tests/data/reference_samples.safetensors (`--add`: only the calls it lacks); tests/test_reference_samples.py samples the same calls and compares bit for
bit. Regenerate only when a change is meant to alter the samples, and say so in the commit.
"""

from __future__ import annotations

import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILE = os.path.join(ROOT, "tests", "data", "reference_samples.safetensors")

# name -> (pipeline folder, call arguments); the generator is seeded with 0 for every call.
CALLS = {
    "dit-digits": ("dit-digits", dict(class_labels=[0, 7], num_inference_steps=6, guidance_scale=3.0)),
    "dit-fashion": ("dit-fashion", dict(class_labels=[1, 8], num_inference_steps=4, guidance_scale=3.0)),
    "ddt-digits": ("ddt-digits", dict(class_labels=[2, 5], num_inference_steps=6, guidance_scale=3.0)),
    "ddt-digits-uniform": ("ddt-digits", dict(class_labels=[3], num_inference_steps=8, guidance_scale=3.0,
                                             sharing="uniform", refresh_rate=3)),
    "ddt-fashion-statdp": ("ddt-fashion", dict(class_labels=[0, 9], num_inference_steps=40, guidance_scale=3.0,
                                               sharing="statdp", refresh_rate=4)),
    "ddt-fashion-statdp-retimed": ("ddt-fashion", dict(class_labels=[0, 9], num_inference_steps=40,
                                                       guidance_scale=3.0, sharing="statdp", refresh_rate=4,
                                                       retime_shared=True)),
    "ar-digits": ("ar-digits", dict(class_labels=[4, 6], guidance_scale=2.0, temperature=0.8)),
    "nar-digits": ("nar-digits", dict(class_labels=[4, 6], guidance_scale=2.0, temperature=0.8)),
    "nar-shapes-video": ("nar-shapes-video", dict(class_labels=[0, 3], guidance_scale=1.5)),
    "unet-digits": ("unet-digits", dict(class_labels=[1, 8], num_inference_steps=10, guidance_scale=1.5)),
    "unet-digits-propagation": ("unet-digits", dict(class_labels=[2, 7], num_inference_steps=12, guidance_scale=1.5,
                                                    key_steps="pro")),
    "unet-shapes-t2i": ("unet-shapes-t2i", dict(prompt=["a large red circle in the center",
                                                         "a small blue star at the top left"],
                                                 num_inference_steps=10, guidance_scale=3.0)),
    "unet-shapes-t2v": ("unet-shapes-t2v", dict(prompt=["a large red circle moving right",
                                                         "a small blue star moving up"],
                                                 num_inference_steps=8, guidance_scale=3.0, key_steps=[0, 3, 6])),
    "var-fashion": ("var-fashion", dict(class_labels=[0, 7], guidance_scale=2.5, top_p=0.96)),
    "mvar-fashion": ("mvar-fashion", dict(class_labels=[0, 7], guidance_scale=2.5, top_p=0.96)),
    "var-digits": ("var-digits", dict(class_labels=[3, 9], guidance_scale=2.5, top_p=0.96)),
    "mvar-digits": ("mvar-digits", dict(class_labels=[3, 9], guidance_scale=2.5, top_p=0.96)),
    "tokenbridge-digits": ("tokenbridge-digits", dict(class_labels=[2, 6], num_inference_steps=8, guidance_scale=3.0)),
    "tokenbridge-fashion": ("tokenbridge-fashion", dict(class_labels=[1, 8], num_inference_steps=8,
                                                        guidance_scale=3.0)),
    "himar-shapes-t2i": ("himar-shapes-t2i", dict(prompt=["a large red circle in the center",
                                                           "a small blue star at the top left"],
                                                   num_inference_steps=4, guidance_scale=3.0)),
    "ett-shapes": ("ett-shapes", dict(prompt=["a large red circle in the center", "a small blue star at the top left"],
                                      guidance_scale=3.0)),
}


def sample(name: str, legacy: bool = False) -> torch.Tensor:
    """The (B, C, H, W) image tensor, or (B, T, C, H, W) video tensor, of one reference call, in [0, 1]."""
    import genlab  # noqa: F401  (registers genlab's pipeline classes in diffusers)
    from diffusers import DiffusionPipeline

    folder, kwargs = CALLS[name]
    kwargs = dict(kwargs)
    if legacy and "refresh_rate" in kwargs:  # the name before the refresh rate got its own name
        kwargs["sharing_ratio"] = kwargs.pop("refresh_rate")
    pipe = DiffusionPipeline.from_pretrained(os.path.join(ROOT, "pipelines", folder))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs)
    return out.frames if hasattr(out, "frames") else out.images


if __name__ == "__main__":
    import sys

    from safetensors.torch import load_file, save_file

    torch.set_num_threads(1)
    legacy = "--legacy" in sys.argv
    os.makedirs(os.path.dirname(FILE), exist_ok=True)
    # `--add`: write only the calls the file lacks (a newly shipped pipeline), keeping every stored sample as it is
    stored = load_file(FILE) if "--add" in sys.argv and os.path.isfile(FILE) else {}
    save_file({name: stored[name] if name in stored else sample(name, legacy).contiguous() for name in CALLS}, FILE)
    print(f"wrote {FILE}")
