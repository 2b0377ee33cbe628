"""The checks every loader runs on a saved folder before a library reads it, so that a missing folder, a missing
file or a broken JSON file ends in one line naming it (not in a deep traceback from diffusers or safetensors)."""

from __future__ import annotations

import json
import os

from .errors import GenlabError


def check_folder(folder: str, what: str) -> str:
    """`folder` when it is a directory, else a GenlabError "<what>: no such folder <folder>"."""
    if not os.path.isdir(folder):
        raise GenlabError(f"{what}: no such folder {folder}")
    return folder


def read_json(path: str, what: str) -> dict:
    """The JSON object in `path`; a missing file, invalid JSON or a non-object is a GenlabError naming `what`."""
    if not os.path.isfile(path):
        raise GenlabError(f"{what}: missing {os.path.basename(path)} in {os.path.dirname(path) or '.'}")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GenlabError(f"{what}: cannot read {path}: it is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise GenlabError(f"{what}: {path} does not hold a JSON object")
    return data
