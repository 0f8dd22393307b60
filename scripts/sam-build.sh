#!/usr/bin/env bash
# Build the SAM application (.aws-sam/build) on a fresh machine: no Docker, no AWS account.
#
#   scripts/sam-build.sh              # lint the template, then sam build
#   scripts/sam-build.sh --no-lint    # sam build only
#   scripts/sam-build.sh -- --cached  # extra arguments after -- go to `sam build`
#
# Needs uv (the SAM CLI runs isolated through uvx at the pinned version, never in the
# project venv), make, and a CPython 3.12 with pip (the Lambda runtime's version: it
# byte-compiles the layer); a pyenv 3.12 is used when python3.12 is not on PATH.
# Environment: SAM_CLI_VERSION (pin), PYTHON312 (interpreter path).
set -euo pipefail

SAM_CLI_VERSION="${SAM_CLI_VERSION:-1.170.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

lint=1
extra=()
while (($#)); do
    case "$1" in
        --no-lint) lint=0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "usage: $0 [--no-lint] [-- sam-build-args...]" >&2; exit 2 ;;
    esac
    shift
done

works() { "$1" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; }

# `sam build` and the Makefiles look for python3.12 on PATH. A pyenv shim may exist without
# working (3.12 installed but not selected), so test that it runs, else use the real binary.
if [[ -z "${PYTHON312:-}" ]]; then
    if works python3.12; then
        PYTHON312="$(python3.12 -c 'import sys; print(sys.executable)')"
    else
        for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
            if works "$candidate"; then PYTHON312="$candidate"; break; fi
        done
    fi
fi
if [[ -z "${PYTHON312:-}" ]] || ! works "$PYTHON312"; then
    echo "sam-build: CPython 3.12 not found; install it (e.g. pyenv install 3.12) or set PYTHON312" >&2
    exit 1
fi
export PYTHON312
export PATH="$(dirname "$PYTHON312"):$PATH"

if [[ ! -f layers/clinicbot/requirements.txt ]]; then
    echo "sam-build: layers/clinicbot/requirements.txt missing; export it from uv.lock:" >&2
    echo "  uv export --no-dev --no-emit-project --no-hashes --no-header -o layers/clinicbot/requirements.txt" >&2
    exit 1
fi

export SAM_CLI_TELEMETRY=0
# Offline and credential-free: sam needs a region to exist, not to be reachable.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-${AWS_REGION:-eu-central-1}}"
sam() { uvx --from "aws-sam-cli==${SAM_CLI_VERSION}" sam "$@"; }

if ((lint)); then
    sam validate --lint --template-file template.yaml
fi
sam build --template-file template.yaml ${extra[@]+"${extra[@]}"}

layer="$ROOT/.aws-sam/build/ClinicBotLayer/python"
for pkg in aiogram clinicbot; do
    if ! compgen -G "$layer/$pkg/__pycache__/*.cpython-312.pyc" >/dev/null; then
        echo "sam-build: no cpython-312 bytecode for $pkg in $layer" >&2
        exit 1
    fi
done
echo "sam-build: layer $(du -sh "$layer/.." | cut -f1) unzipped in .aws-sam/build/ClinicBotLayer"
