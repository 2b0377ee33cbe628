"""Serve the genlab demo: `python demo/app.py [--pipelines DIR] [--host H] [--port P] [--share]`."""

import argparse
import os
import sys

# Run from a checkout without `pip install -e .` too: the repository root holds the genlab package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genlab.demo import launch
from genlab.errors import GenlabError


def main(argv=None):
    """Parse the flags and serve until interrupted."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipelines", default=os.path.join(root, "pipelines"),
                        help="folder whose sub-folders with a model_index.json are shown (default: the repo's pipelines/)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: the whole network)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    args = parser.parse_args(argv)
    try:
        launch(pipelines_dir=args.pipelines, host=args.host, port=args.port, share=args.share)
    except GenlabError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
