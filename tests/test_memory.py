"""Memory bounds: sampling every shipped pipeline at batch 16 stays under 1 GiB peak RSS, and the demo server
survives 20 sequential and 4 concurrent requests with its memory growing less than 10%."""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024 ** 3

SAMPLE_ALL = r"""
import resource, subprocess, sys, torch
import genlab


def peak_rss():
    # VmHWM is this process's own high-water mark. ru_maxrss is not: Linux keeps it across execve, so a child that
    # pytest starts would report pytest's own peak (1.2 GB after the rest of the suite) instead of its own.
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

from genlab.eval.runner import evaluation_inputs
from genlab.pipelines.loading import accepted, load_pipeline, sampling_defaults, training_info
root = sys.argv[1]
names = subprocess.run(["git", "ls-files", "pipelines/*/model_index.json"], cwd=root, capture_output=True,
                       text=True, check=True).stdout.split()
for index in names:
    path = f"{root}/{index.rsplit('/', 1)[0]}"
    steps, guidance, sample = sampling_defaults(path)
    pipe = load_pipeline(path)
    pipe.set_progress_bar_config(disable=True)
    inputs = evaluation_inputs(pipe, training_info(path).get("dataset"), 16)[0]  # labels i % K, or test captions
    extra = {k_: v for k_, v in sample.items() if k_ not in ("num_inference_steps", "guidance_scale")}
    call = accepted(pipe, {"num_inference_steps": steps, "guidance_scale": guidance, **extra})
    if "sharing" in call or type(pipe).__name__ == "DDTPipeline":
        call.update(sharing="statdp", refresh_rate=4)
    pipe(**inputs, generator=torch.Generator().manual_seed(0), **call)
    print(path, peak_rss(), flush=True)
"""


@pytest.mark.slow
def test_sampling_every_shipped_pipeline_at_batch_16_stays_under_1_gib():
    result = subprocess.run([sys.executable, "-c", SAMPLE_ALL, str(ROOT)], capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines()]
    assert len(rows) >= 7
    for path, peak in rows:  # the process's peak so far: each row bounds every pipeline before it
        assert int(peak) < GIB, f"{path}: peak RSS {int(peak) / 2**20:.0f} MiB"


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's RSS from /proc")
def test_demo_survives_sequential_and_concurrent_requests_without_growing(tmp_path):
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(ROOT / "demo" / "app.py"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False"))
    try:
        client = None
        for _ in range(120):
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # noqa: BLE001  not serving yet
                time.sleep(0.5)
        assert client is not None, "the demo did not start"
        forms = [["dit-digits", "3", "", 8, 4, 3.0, 1.0, 0, 2, False, "statdp", 2],
                 ["ddt-digits", "5", "", 8, 4, 3.0, 1.0, 1, 2, True, "uniform", 2],
                 ["nar-digits", "7", "", 8, 4, 2.0, 0.8, 2, 2, False, "statdp", 2]]
        for form in forms:  # warm-up: every pipeline loaded and run once before the baseline is read
            client.predict(*form, api_name="/generate")
        baseline = rss(server.pid)
        for i in range(20):
            image, status = client.predict(*forms[i % 3], api_name="/generate")
            assert image and os.path.isfile(image), status
        errors = []

        def request(form):
            try:
                image, status = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(*form,
                                                                                          api_name="/generate")
                assert image and os.path.isfile(image), status
            except Exception as e:  # noqa: BLE001  collected and reported below
                errors.append(e)

        threads = [threading.Thread(target=request, args=(forms[i % 3],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors
        assert server.poll() is None, "the demo server died"
        grown = rss(server.pid) / baseline - 1
        assert grown < 0.10, f"the demo's RSS grew by {100 * grown:.1f}% over 24 requests"
    finally:
        server.terminate()
        server.wait(timeout=30)
