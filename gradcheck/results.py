"""Grading results: what scoring produces and every report renders.

Plain frozen dataclasses with JSON round-trips (``to_dict``/``from_dict``), so results can
be cached for ``--resume``, merged across ``--shard`` runs, and rendered to any format
without re-grading. Nothing here runs or compares anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["CheckResult", "AssignmentResult", "StudentResult", "RunInfo"]


@dataclass(frozen=True)
class CheckResult:
    """One scored check, e.g. ``bprop: dW2`` of ``two_hidden``."""

    assignment: str
    name: str
    """Stable, unique within the assignment: "fprop", "bprop: W2", "update"."""
    kind: str
    """"fprop", "bprop" or "update"."""
    score: float
    max_score: float
    passed: bool
    summary: str
    """One plain sentence: what was compared and the verdict."""
    details: tuple[str, ...] = ()
    """Further lines for the student: the example, worst entry, both values, relative error."""
    diagnosis: str = ""
    """The likely cause, in plain language, when a pattern is recognised."""
    example: str = ""
    """Which example failed first ("the document's worked example", "hidden example 2 (m=5)")."""
    relative_error: float | None = None
    figure: str | None = None
    """Path of a heatmap PNG, relative to the student's output folder."""

    def to_dict(self) -> dict[str, Any]:
        return _shallow(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(**{**data, "details": tuple(data.get("details", ()))})


@dataclass(frozen=True)
class AssignmentResult:
    """All checks of one assignment for one student."""

    assignment: str
    source: str | None
    """The file graded, relative to the student's folder; None when it is missing."""
    checks: tuple[CheckResult, ...]
    problems: tuple[str, ...] = ()
    """What went wrong around the checks: missing file, failing notebook cells, timeouts."""
    output: str = ""
    """Head of what the submission printed."""
    seconds: float = 0.0
    content_hash: str = ""
    """Hash of the graded file, for --resume."""
    flags: tuple[str, ...] = ()
    """For the instructor only, never scored (e.g. a backward pass made of finite differences)."""

    @property
    def score(self) -> float:
        return round(sum(check.score for check in self.checks), 6)

    @property
    def max_score(self) -> float:
        return round(sum(check.max_score for check in self.checks), 6)

    def to_dict(self) -> dict[str, Any]:
        return {**_shallow(self), "checks": [check.to_dict() for check in self.checks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AssignmentResult:
        return cls(
            **{
                **data,
                "checks": tuple(CheckResult.from_dict(c) for c in data.get("checks", ())),
                "problems": tuple(data.get("problems", ())),
                "flags": tuple(data.get("flags", ())),
            }
        )


@dataclass(frozen=True)
class StudentResult:
    """Everything graded for one student."""

    student: str
    assignments: tuple[AssignmentResult, ...]
    unknown_files: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    """Student-level messages (e.g. both NAME.py and NAME.ipynb present)."""
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return round(sum(a.score for a in self.assignments), 6)

    @property
    def max_score(self) -> float:
        return round(sum(a.max_score for a in self.assignments), 6)

    @property
    def percentage(self) -> float:
        return 100.0 * self.score / self.max_score if self.max_score else 0.0

    def assignment(self, name: str) -> AssignmentResult | None:
        return next((a for a in self.assignments if a.assignment == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {**_shallow(self), "assignments": [a.to_dict() for a in self.assignments]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentResult:
        return cls(
            student=data["student"],
            assignments=tuple(AssignmentResult.from_dict(a) for a in data.get("assignments", ())),
            unknown_files=tuple(data.get("unknown_files", ())),
            notes=tuple(data.get("notes", ())),
            seconds=float(data.get("seconds", 0.0)),
        )


@dataclass(frozen=True)
class RunInfo:
    """How a run was graded: enough to refuse merging incompatible shards."""

    grader_version: str
    seed: int
    assignments: tuple[str, ...]
    rubric: dict[str, float] = field(default_factory=dict)
    shard: str = ""
    """"K/N" when this run graded one slice of the students."""
    isolation: str = ""
    """How student code was confined, e.g. ``"isolation: landlock 7, netns, seccomp"``."""

    def to_dict(self) -> dict[str, Any]:
        return {**_shallow(self), "rubric": dict(self.rubric)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        return cls(**{**data, "assignments": tuple(data.get("assignments", ()))})


def _shallow(result: Any) -> dict[str, Any]:
    # Fields hold strings, numbers and tuples of strings, which JSON takes as they are: no
    # need for dataclasses.asdict's deep copy (most of the time of writing a class's run.json).
    return {f.name: getattr(result, f.name) for f in fields(result)}
