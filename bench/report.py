"""Figures, their anchors and targets; the JSON and Markdown results.

Every figure is shown beside an anchor measured in the same run, because the
machines are shared and noisy: the ratio travels between runs, the absolute
number less so. A target from DESIGN.md is judged on the ratio where DESIGN.md
gives the anchor it was set against (target / DESIGN anchor), else on the value.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence


def pct(samples: Sequence[float], p: float) -> float:
    """The p-th percentile (linear interpolation between closest ranks)."""
    if not samples:
        return math.nan
    s = sorted(samples)
    k = (len(s) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class Figure:
    """One measured figure, its anchor and target."""

    section: str
    name: str
    value: float
    unit: str
    anchor_name: str = ""
    anchor: float | None = None
    # Target as DESIGN.md states it: ("<=" | ">=", number) on the value, and/or on the ratio.
    target: tuple[str, float] | None = None
    ratio_target: tuple[str, float] | None = None
    ratio_note: str = ""
    n: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.anchor in (None, 0) or self.value is None or math.isnan(self.value):
            return None
        return self.value / self.anchor

    @staticmethod
    def _meets(x: float | None, t: tuple[str, float] | None) -> bool | None:
        if t is None or x is None or math.isnan(x):
            return None
        return x <= t[1] if t[0] == "<=" else x >= t[1]

    @property
    def abs_pass(self) -> bool | None:
        return self._meets(self.value, self.target)

    @property
    def ratio_pass(self) -> bool | None:
        return self._meets(self.ratio, self.ratio_target)

    @property
    def verdict(self) -> str:
        """pass / miss on the ratio when there is a ratio target, else on the value."""
        primary = self.ratio_pass if self.ratio_target else self.abs_pass
        if primary is None:
            return "info"
        word = "pass" if primary else "**miss**"
        if self.ratio_target and self.target and self.abs_pass is not None and self.abs_pass != primary:
            word += f" (absolute {'pass' if self.abs_pass else 'miss'})"
        return word


def fmt(x: float | None, unit: str = "") -> str:
    """A number with about three significant digits and its unit."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    a = abs(x)
    text = str(x) if isinstance(x, int) else f"{x:.0f}" if a >= 100 else f"{x:.1f}" if a >= 10 else f"{x:.2f}" if a >= 1 else f"{x:.3f}"
    return f"{text} {unit}".strip()


def _target_text(f: Figure) -> str:
    parts = []
    if f.target:
        parts.append(f"{'≤' if f.target[0] == '<=' else '≥'} {fmt(f.target[1], f.unit)}")
    if f.ratio_target:
        parts.append(f"ratio {'≤' if f.ratio_target[0] == '<=' else '≥'} {fmt(f.ratio_target[1])}"
                     + (f" ({f.ratio_note})" if f.ratio_note else ""))
    return "; ".join(parts) or "—"


def markdown(figures: list[Figure], meta: dict) -> str:
    """The results table (one per section) with the run's facts above it."""
    lines = [f"Run {meta['started']} on {meta['machine']} — {meta['runtime_s']:.0f} s, "
             f"flags `{meta['argv'] or '(none)'}`", ""]
    lines += ["| Figure | Measured | Anchor (same run) | Ratio | Target (DESIGN.md) | Result |",
              "|---|---|---|---|---|---|"]
    section = None
    for f in figures:
        if f.section != section:
            section = f.section
            lines.append(f"| **{section}** | | | | | |")
        anchor = f"{fmt(f.anchor, f.extra.get('anchor_unit', f.unit))} {f.anchor_name}".strip() if f.anchor is not None else "—"
        n = f" (n={f.n})" if f.n else ""
        ratio = fmt(f.ratio) + "×" if f.ratio is not None else "—"
        lines.append(f"| {f.name}{n} | {fmt(f.value, f.unit)} | {anchor} | {ratio} | {_target_text(f)} | {f.verdict} |")
    cleanup = meta.get("cleanup") or {}
    lines += ["", f"Cleanup: mounts left under the data dir: {len(cleanup.get('mounts_left', [])) if cleanup else '?'}"
              f", runc containers left: {len(cleanup.get('containers_left', [])) if cleanup else '?'}."]
    for note in meta.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def write(figures: list[Figure], meta: dict, out_dir: Path) -> tuple[Path, Path, str]:
    """bench-results/<timestamp>.json and .md; returns the paths and the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = meta["started"].replace(":", "").replace("-", "")
    data = {"meta": meta, "figures": [
        {**asdict(f), "ratio": f.ratio, "abs_pass": f.abs_pass, "ratio_pass": f.ratio_pass, "verdict": f.verdict}
        for f in figures]}
    jpath, mpath = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    jpath.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md = markdown(figures, meta)
    mpath.write_text(md)
    return jpath, mpath, md
