"""Cold start of the webhook function next to `import aiogram` alone, measured side by side in one run.

Each figure is the CPU time (user + sys) of a fresh interpreter, the best of N runs, in four settings:
  venv            the development venv (ordinary .pyc caches, written on first import)
  layer/stale     a layer-shaped tree for Python 3.12 as SAM ships it: files dated 1980 (zip entries), .pyc
                  compiled by timestamp beforehand (so every one is stale), read-only (no .pyc written):
                  every cold start recompiles everything
  layer/hash      the same tree compiled with --invalidation-mode unchecked-hash, as our layer Makefile does
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "bench-layer"


def _python312() -> str:
    """Lambda's runtime is python3.12: a real interpreter (pyenv's own, not its shim), or PYTHON312."""
    if os.environ.get("PYTHON312"):
        return os.environ["PYTHON312"]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = sorted(pyenv_root.glob("versions/3.12.*/bin/python3.12"))
    return str(found[-1]) if found else (shutil.which("python3.12") or "python3.12")


PY312 = _python312()
EPOCH_1980 = 315532800  # 1980-01-01, the timestamp zip entries carry

ENV = {
    "CLINICBOT_BOT_TOKEN": "123456789:BENCH-dummy",
    "CLINICBOT_WEBHOOK_SECRET": "bench-secret",
    "CLINICBOT_STATE_TABLE": "clinicbot-state",
    "AWS_DEFAULT_REGION": "eu-central-1",
    "AWS_REGION": "eu-central-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "POWERTOOLS_SERVICE_NAME": "clinicbot",
    "POWERTOOLS_TRACE_DISABLED": "true",
}

IMPORT_AIOGRAM = "import aiogram"
WEBHOOK_INIT = textwrap.dedent(
    f"""
    import importlib.util
    spec = importlib.util.spec_from_file_location("app", {str(ROOT / "functions" / "webhook" / "app.py")!r})
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.APP is not None
    """
)


def cpu_seconds(python: str, code: str, env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([python, "-s", "-c", code], env=env, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def best(python: str, code: str, env: dict[str, str], runs: int) -> tuple[float, float]:
    samples = [cpu_seconds(python, code, env) for _ in range(runs)]
    return min(samples), statistics.median(samples)


def build_layer(mode: str) -> Path:
    """A layer-shaped tree (site-packages + clinicbot) for this machine's CPU and Python 3.12."""
    target = BUILD / mode / "python"
    base = BUILD / "base" / "python"
    if not base.exists():
        base.mkdir(parents=True)
        subprocess.run(
            [
                "uv",
                "pip",
                "install",
                "--quiet",
                "--python",
                PY312,
                "--target",
                str(base),
                "-r",
                str(ROOT / "layers" / "clinicbot" / "requirements.txt"),
            ],
            check=True,
        )
        shutil.copytree(ROOT / "layers" / "clinicbot" / "clinicbot", base / "clinicbot")
    if target.exists():
        shutil.rmtree(target.parent)
    shutil.copytree(base, target, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(target / "clinicbot")
    shutil.copytree(
        ROOT / "layers" / "clinicbot" / "clinicbot",
        target / "clinicbot",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    invalidation = "timestamp" if mode == "stale" else "unchecked-hash"
    subprocess.run(
        [PY312, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", invalidation, str(target)],
        check=True,
    )
    for path in target.rglob("*"):  # as unzipped from a SAM artifact: every entry dated 1980
        os.utime(path, (EPOCH_1980, EPOCH_1980), follow_symlinks=False)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-layer", action="store_true", help="only the venv figures")
    parser.add_argument(
        "--compare-aiogram",
        default="3.31.0",
        help="also time `import aiogram` of this version in the same layer setting ('' to skip)",
    )
    args = parser.parse_args()

    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINICBOT_", "AWS_", "PYTHON"))}
    rows: list[tuple[str, str, float, float, float, float]] = []

    venv_env = {**base_env, **ENV}
    rows.append(
        (
            "venv",
            sys.executable,
            *best(sys.executable, IMPORT_AIOGRAM, venv_env, args.runs),
            *best(sys.executable, WEBHOOK_INIT, venv_env, args.runs),
        )
    )
    if not args.skip_layer:
        for mode in ("stale", "hash"):
            layer = build_layer(mode)
            env = {**base_env, **ENV, "PYTHONPATH": str(layer), "PYTHONDONTWRITEBYTECODE": "1"}
            rows.append(
                (
                    f"layer/{mode}",
                    "python3.12",
                    *best(PY312, IMPORT_AIOGRAM, env, args.runs),
                    *best(PY312, WEBHOOK_INIT, env, args.runs),
                )
            )

    if args.compare_aiogram and not args.skip_layer:
        other = BUILD / f"aiogram-{args.compare_aiogram}" / "python"
        if not other.exists():
            other.mkdir(parents=True)
            subprocess.run(
                [
                    "uv",
                    "pip",
                    "install",
                    "--quiet",
                    "--python",
                    PY312,
                    "--target",
                    str(other),
                    f"aiogram=={args.compare_aiogram}",
                ],
                check=True,
            )
            subprocess.run(
                [
                    PY312,
                    "-m",
                    "compileall",
                    "-q",
                    "-j",
                    "0",
                    "--invalidation-mode",
                    "unchecked-hash",
                    str(other),
                ],
                check=True,
            )
        env = {**base_env, "PYTHONPATH": str(other), "PYTHONDONTWRITEBYTECODE": "1"}
        a_best, a_med = best(PY312, IMPORT_AIOGRAM, env, args.runs)
        rows.append(
            (f"aiogram {args.compare_aiogram}", "python3.12", a_best, a_med, float("nan"), float("nan"))
        )

    print(f"Cold start, CPU seconds of a fresh interpreter (best / median of {args.runs} runs)")
    print(f"{'setting':<18}{'python':<8}{'import aiogram':>18}{'webhook init':>18}{'ratio':>8}")
    for name, python, a_best, a_med, w_best, w_med in rows:
        label = "3.12" if "3.12" in python else f"{sys.version_info.major}.{sys.version_info.minor}"
        print(
            f"{name:<14}{label:<12}{a_best:>9.2f} /{a_med:>6.2f}{w_best:>9.2f} /{w_med:>6.2f}"
            f"{w_best / a_best:>8.2f}"
        )
    hash_row = next((r for r in rows if r[0] == "layer/hash"), None)
    if hash_row:
        print(
            f"our code + pynamodb/botocore + powertools + settings on top of aiogram (layer/hash): "
            f"{hash_row[4] - hash_row[2]:.2f} s"
        )
    print("goal: webhook init <= 1.10 x import aiogram (our code, boto3, pynamodb, powertools add <= 10 %)")


if __name__ == "__main__":
    main()
