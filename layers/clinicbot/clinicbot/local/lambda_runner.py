"""Invoke a function of ``functions/`` the way the Lambda runtime does: import ``app.py`` once (the cold
start), then call ``handler(event, context)`` per event. No Docker."""

from __future__ import annotations

import importlib.util
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[4]
FUNCTIONS = REPO_ROOT / "functions"


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int = 512
    timeout_ms: int = 25_000
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.timeout_ms - (time.monotonic() - self._started) * 1000))


def load_function(name: str) -> ModuleType:
    """Import ``functions/<name>/app.py`` as module ``clinicbot_fn_<name>`` (once per process)."""
    module_name = f"clinicbot_fn_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = FUNCTIONS / name / "app.py"
    if not path.exists():
        known = sorted(p.name for p in FUNCTIONS.iterdir() if (p / "app.py").exists())
        raise SystemExit(f"no function {name!r}; known: {', '.join(known)}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def invoke(name: str, event: dict[str, Any]) -> Any:
    module = load_function(name)
    return module.handler(event, LambdaContext(function_name=f"clinicbot-{name}"))
