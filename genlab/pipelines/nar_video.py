"""NAR video pipeline: class label -> a T x h x w grid of VQ ids sampled plane by plane (t + h + w = const, one
forward pass each: T + H + W - 2 passes, 34 for 4 x 16 x 16) -> each frame decoded by the 2-D VQ tokenizer.

At tiny scale the video tokenizer is the image VQ applied per frame (no temporal compression); the official NAR
video model uses LARP's 1-D video tokenizer, which is out of reach on a CPU.
"""

from __future__ import annotations

import torch

from ..errors import GenlabError, check_positive_int
from .nar import NARPipeline


class NARVideoPipeline(NARPipeline):
    """Components: `transformer` (NARModel with a (T, h, w) grid: horizontal, vertical and temporal heads) and
    `image_tokenizer` (the per-frame VQTokenizer). After a call, `last_num_forward` holds the forward passes."""

    grid_dims = 3
    produces_video = True

    @property
    def num_frames(self) -> int:
        """The clip length the transformer was trained for (its grid's T)."""
        return int(self.transformer.grid[0])

    @torch.no_grad()
    def __call__(self, class_labels=None, num_frames: int | None = None, guidance_scale: float = 1.5,
                 guidance_interval: tuple[float, float] | None = None, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, generator: torch.Generator | None = None, output_type: str = "pil",
                 return_dict: bool = True, callback_on_step_end=None,
                 guidance_max_tokens: int | None = None):
        """Generate one clip per entry of `class_labels` (ints or class names).

        num_frames: frames to return, 1..T (default T, the trained length). The model always decodes its whole
        trained T x h x w grid, because its proximity mask lets a token see every earlier plane, including planes
        that reach later frames; returning a prefix keeps the clip on the trained distribution. Other arguments
        as NARPipeline. Returns GenlabVideoOutput(frames=[[PIL] * num_frames] * B) (or a tuple).
        """
        self.check_output_type(output_type)
        self.check_components()
        trained = self.num_frames
        num_frames = trained if num_frames is None else check_positive_int(num_frames, "num_frames")
        if num_frames > trained:
            raise GenlabError(f"num_frames={num_frames} is beyond what this model was trained for: it generates "
                              f"clips of at most {trained} frames")
        ids = self.sample_ids(class_labels, guidance_scale, guidance_interval, temperature, top_k, top_p, generator,
                              callback_on_step_end, guidance_max_tokens)
        frames = self.image_tokenizer.decode(ids[:, :num_frames].flatten(0, 1))  # (B * T', C, H, W)
        return self.video_output(frames, ids.shape[0], output_type, return_dict)
