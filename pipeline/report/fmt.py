"""How numbers and models are written in the report's tables and sentences."""
from __future__ import annotations

import numpy as np


def num(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or np.isnan(v) else f"{v:.{digits}f}"


def with_ci(v: float, ci: tuple[float, float], digits: int = 3, signed: bool = False) -> str:
    """A value with its interval, "0.912 [0.850, 0.960]"; signed for differences ("+0.031 [-0.010, +0.070]")."""
    f = f"{'+' if signed else ''}.{digits}f"
    if v is None or np.isnan(v):
        return "n/a"
    if any(c is None or np.isnan(c) for c in ci):
        return f"{v:{f}} [CI n/a]"
    return f"{v:{f}} [{ci[0]:{f}}, {ci[1]:{f}}]"


def role(model: str, members: list[dict]) -> str:
    if model == "ensemble":
        return "ensemble (mean of member softmax)"
    head = next((m.get("head") for m in members if m.get("name") == model), None)
    if model == "meanpool" or head in ("meanpool", "framelinear"):
        return f"baseline: {head or model}" + ("" if head else " (not a member in run.json)")
    return f"member ({head})" if head else "not a member in run.json"
