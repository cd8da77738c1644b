"""Every exception class of ``stream_app`` derives from the root error and says whether it is
retriable (:mod:`stream_app.errors`)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import stream_app
from stream_app.errors import WeddingError

PACKAGE = Path(stream_app.__file__).parent
CLASS = re.compile(r"^class (\w+)\b", re.MULTILINE)


def exception_classes() -> list[type[BaseException]]:
    """The exception classes defined at module level anywhere in the package."""
    found: list[type[BaseException]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        # a regex, not ast.parse: CPython 3.11 can fail parsing in a long session (the AST
        # constructor's recursion check, "recursion depth mismatch")
        names = CLASS.findall(path.read_text())
        if not names:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = importlib.import_module(".".join(p for p in parts if p != "__init__"))
        for name in names:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                found.append(obj)
    return found


def test_every_exception_class_derives_from_the_root() -> None:
    classes = exception_classes()
    assert len(classes) >= 40  # 44 when written: a scan that finds few is broken
    outside = [
        f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, WeddingError)
    ]
    assert outside == []
    assert all(isinstance(c.retriable, bool) for c in classes)  # type: ignore[attr-defined]


def test_retriable_is_read_from_the_class() -> None:
    from stream_app.delivery.base import PermanentDeliveryError, TransientDeliveryError
    from stream_app.queries.errors import QueryUnavailableError
    from stream_app.schemas.base import EventValidationError

    assert TransientDeliveryError("x").retriable is True
    assert PermanentDeliveryError("x").retriable is False
    assert QueryUnavailableError("recovering", "x").retriable is True
    assert issubclass(EventValidationError, ValueError)  # built-in categories are kept
