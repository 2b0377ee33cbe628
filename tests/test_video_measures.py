"""Video measures (genlab.eval.video): centroids, motion consistency and direction accuracy on real moving-shape
clips (which must pass them) and on clips broken on purpose (which must fail), and their use by genlab eval for
prompted video pipelines."""

import random

import pytest
import torch

from genlab.data import load_dataset
from genlab.errors import GenlabError
from genlab.eval.video import (centroids, direction_accuracy, motion_consistency, shapes_min_travel,
                               shapes_step_range)


@pytest.fixture(scope="module", params=[16, 32])
def clips(request):
    size = request.param
    test = load_dataset("shapes", "test", image_size=size, video=True, num_frames=4, num_samples=200)
    return size, test.videos, [a["direction"] for a in test.attributes], test.attributes


def test_centroids_follow_the_drawn_centres(clips):
    size, videos, _, attributes = clips
    exact = torch.tensor([a["centers"] for a in attributes], dtype=torch.float32)  # (B, T, 2)
    # the centroid of a rasterised (anti-aliased) shape sits within a pixel of its exact centre; a triangle's
    # centroid lies below its circumcentre, hence the pixel of slack
    assert (centroids(videos) - exact).norm(dim=-1).median() < 0.75


def test_real_clips_move_in_their_captioned_direction(clips):
    size, videos, directions, _ = clips
    travel = shapes_min_travel(size, 4)
    assert direction_accuracy(videos, directions, travel) == 1.0
    # at 16 px the thresholded centroid moves in whole-pixel jumps, so a few real steps fall outside the range
    assert motion_consistency(videos, shapes_step_range(size)) >= (0.85 if size == 16 else 0.95)


def test_broken_clips_fail_the_direction_measure(clips):
    size, videos, directions, _ = clips
    travel = shapes_min_travel(size, 4)
    shuffled = directions[:]
    random.Random(0).shuffle(shuffled)
    assert direction_accuracy(videos, shuffled, travel) < 0.25  # chance: 1/8
    assert direction_accuracy(videos.flip(1), directions, travel) == 0.0  # played backwards
    still = videos[:, :1].expand_as(videos)
    assert direction_accuracy(still, directions, travel) == 0.0  # no motion
    assert motion_consistency(still, shapes_step_range(size)) == 0.0
    empty = -torch.ones_like(videos)
    assert direction_accuracy(empty, directions, travel) == 0.0  # nothing drawn


def test_direction_measure_rejects_bad_input():
    x = -torch.ones(2, 3, 3, 8, 8)
    with pytest.raises(GenlabError, match="unknown direction 'sideways'"):
        direction_accuracy(x, ["left", "sideways"], 1.0)
    with pytest.raises(GenlabError, match="1 directions for 2 clips"):
        direction_accuracy(x, ["left"], 1.0)
    with pytest.raises(GenlabError, match="at least 2 frames"):
        direction_accuracy(x[:, :1], ["left", "up"], 1.0)
    with pytest.raises(GenlabError, match=r"\(B, T, C, H, W\)"):
        direction_accuracy(x[0], ["left", "up"], 1.0)


class PromptedVideo:
    """What evaluation_inputs reads of a prompted video pipeline: its conditioning, video flag and clip length."""
    produces_video = True
    config = type("Config", (), {"num_frames": 4})()

    def conditioning_inputs(self):
        return ("prompt",)


def test_eval_prompts_video_pipelines_with_clip_captions_and_scores_direction():
    from genlab.eval import load_classifier, real_reference
    from genlab.eval.runner import evaluation_inputs, score_samples

    inputs, labels, attributes = evaluation_inputs(PromptedVideo(), "shapes", 20)
    assert all(" moving " in p for p in inputs["prompt"]) and len(attributes) == 20
    real = load_dataset("shapes", "test", video=True, num_frames=4)  # 32 px, as unet-shapes-t2v decodes
    assert inputs["prompt"] == real.captions[:20]  # the test clips' captions, in order
    videos = real.videos[:20]
    scores = score_samples(videos, labels, attributes, load_classifier("shapes"), real_reference("shapes"))
    assert scores["direction_accuracy"] == 1.0 and scores["motion_consistency"] >= 0.75
    assert scores["class_accuracy"] >= 0.9 and scores["color_accuracy"] >= 0.9
    backwards = score_samples(videos.flip(1), labels, attributes, load_classifier("shapes"),
                              real_reference("shapes"))
    assert backwards["direction_accuracy"] == 0.0


def test_eval_says_when_a_data_set_has_no_clips():
    from genlab.eval.runner import evaluation_inputs

    with pytest.raises(GenlabError, match="no captioned clips"):
        evaluation_inputs(PromptedVideo(), "digits", 4)
