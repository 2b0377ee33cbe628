"""Write a small image folder to try `genlab train ... --data imagefolder` with: PNGs of genlab's procedural shapes,
one sub-folder per shape (the classes), each image with its caption in a .txt file beside it.

    python scripts/make_example_images.py my_images [--per-class 50] [--size 32]
"""

from __future__ import annotations

import argparse
import os

from genlab.data import load_dataset
from genlab.utils import tensor_to_pil


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="where to write the class sub-folders (created; existing files are kept)")
    parser.add_argument("--per-class", type=int, default=50, help="images per class (default 50)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    args = parser.parse_args(argv)
    data = load_dataset("shapes", split="train", image_size=args.size, num_samples=20 * args.per_class)
    written = {}
    for image, label, caption in zip(tensor_to_pil(data.images), data.labels.tolist(), data.captions):
        name = data.class_names[label]
        if written.get(name, 0) >= args.per_class:
            continue
        folder = os.path.join(args.folder, name)
        os.makedirs(folder, exist_ok=True)
        stem = os.path.join(folder, f"{written.get(name, 0):04d}")
        image.save(stem + ".png")
        with open(stem + ".txt", "w") as f:
            f.write(caption + "\n")
        written[name] = written.get(name, 0) + 1
    print(f"wrote {sum(written.values())} images in {len(written)} class folders under {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
