"""Annotations: telestration strokes and chat, checked and stored.

Called by the consumer (annotation_add).
"""

from __future__ import annotations

import math
from typing import Any

from orstream import roles

from ..models import Annotation, Participant


class AnnotationError(Exception):
    """A telestration stroke or chat line that cannot be stored as sent."""


# The tools and colours a stroke may use, in the order the pages' pickers offer them (they come
# to the pages in the bootstrap data: presenters.drawing_choices).
STROKE_TOOL_NAMES = {"freehand": "Freehand", "arrow": "Arrow", "circle": "Circle"}
STROKE_COLOUR_NAMES = {"#ffeb3b": "Yellow", "#00e5ff": "Cyan", "#76ff03": "Green", "#ff1744": "Red", "#ffffff": "White"}
STROKE_TOOLS = frozenset(STROKE_TOOL_NAMES)
STROKE_COLOURS = frozenset(STROKE_COLOUR_NAMES)
MAX_STROKE_POINTS = 2000
MAX_CHAT_CHARS = 2000


def _clean_annotation(kind: str, message: dict[str, Any]) -> dict[str, Any]:
    if kind == "clear":
        return {}
    if kind == "chat":
        text = message.get("text")
        if not isinstance(text, str) or not text.strip():
            raise AnnotationError("A chat message needs some text.")
        if len(text) > MAX_CHAT_CHARS:
            raise AnnotationError(f"Chat messages are limited to {MAX_CHAT_CHARS} characters.")
        return {"text": text.strip()}
    tool = message.get("tool")
    if not isinstance(tool, str) or tool not in STROKE_TOOLS:  # a list or an object is no tool (nor hashable)
        raise AnnotationError(f"Strokes use one of the tools {', '.join(sorted(STROKE_TOOLS))}.")
    colour = str(message.get("color", "")).lower()
    if colour not in STROKE_COLOURS:
        raise AnnotationError(f"Strokes use one of the colours {', '.join(sorted(STROKE_COLOURS))}.")
    points = message.get("points")
    if not isinstance(points, list) or not 1 <= len(points) <= MAX_STROKE_POINTS:
        raise AnnotationError(f"A stroke has between 1 and {MAX_STROKE_POINTS} points.")
    clean: list[list[float]] = []
    for point in points:
        if (
            not isinstance(point, list)
            or len(point) != 2
            or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in point)
        ):
            raise AnnotationError("Stroke points are [x, y] pairs in video coordinates between 0 and 1.")
        clean.append([round(float(point[0]), 5), round(float(point[1]), 5)])
    return {"tool": tool, "color": colour, "points": clean, "stroke_id": str(message.get("stroke_id", ""))[:40]}


def annotation_add(*, participant: Participant, kind: str, message: dict[str, Any]) -> Annotation:
    """Store a stroke, clear or chat line with the media time it refers to."""
    if kind in ("stroke", "clear") and not roles.role_may_draw(participant.role):
        raise AnnotationError("Your role can watch but not draw.")
    if kind == "chat" and not roles.role_may_chat(participant.role):
        raise AnnotationError("A conference-room display cannot chat.")
    payload = _clean_annotation(kind, message)
    media_time = message.get("media_time")
    # NaN and infinity are numbers to Python's JSON but not to a browser's: refused, so that no
    # broadcast ever carries one.
    if media_time is not None and (
        isinstance(media_time, bool) or not isinstance(media_time, (int, float)) or not math.isfinite(media_time)
    ):
        raise AnnotationError("media_time is a number of seconds.")
    return Annotation.objects.create(
        session=participant.session,
        participant=participant,
        kind=kind,
        payload=payload,
        media_time=float(media_time) if media_time is not None else None,
    )
