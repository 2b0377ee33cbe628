"""Every command the README shows in a shell block runs as written, in a copy of the repository, and leaves the
shipped pipelines/ and tokenizers/ folders untouched (git status of the copy).

Skipped, each for its stated reason: `pip install` (this environment was installed by exactly those commands:
.ci/run does it), the test command itself (`python -m pytest`), and lines the README marks as `# long`,
`# interactive` or `# serves until stopped`.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_MARKS = ("# long", "# interactive", "# serves until stopped")


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or any(mark in line for mark in SKIP_MARKS):
                continue
            for part in line.split(" && "):
                part = part.split("  #")[0].split(" # ")[0].strip()  # drop trailing comments
                if part.startswith("pip install") or part.startswith("python -m pytest"):
                    continue
                commands.append(part)
    return commands


def test_the_readme_has_commands_to_run():
    commands = readme_commands()
    assert any(c.startswith("genlab sample pipelines/dit-digits") for c in commands)
    assert any(c.startswith("genlab train") for c in commands) and any(c.startswith("genlab eval") for c in commands)


@pytest.mark.slow
def test_every_readme_command_runs_and_leaves_shipped_folders_alone(tmp_path):
    copy = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], cwd=copy, check=True)
    subprocess.run(git + ["add", "-A"], cwd=copy, check=True)
    subprocess.run(git + ["commit", "-qm", "copy"], cwd=copy, check=True)
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1")
    env.pop("GENLAB_PLUGINS", None)
    for command in readme_commands():
        result = subprocess.run(shlex.split(command), cwd=copy, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"README command failed: {command}\n{result.stderr[-3000:]}"
    status = subprocess.run(["git", "status", "--porcelain", "--", "pipelines", "tokenizers"], cwd=copy,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", f"README commands changed shipped folders:\n{status}"
