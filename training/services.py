"""Training: programmes, who operated, assessments on the timeline (blind by default), residents'
progress and the model-procedure library.

Called by the training pages and API. Reaches recordings and consent through their services only:
every act on a recording (assess, curate, show an assessment) first asks consent's gate for the
``archive_training`` purpose, so a recording the patient did not allow for training can never be
assessed or curated. Never shows a rater's scores to another rater who has not submitted their own.
Never names a patient: recordings and sessions are named by procedure and public id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from consent import services as consent_services
from consent.audit import audit_record
from mentoring.models import Role as SessionRole
from mentoring.models import Session
from orstream import roles
from recordings import services as recording_services
from recordings.models import Bookmark, Recording

from .models import (
    Assessment,
    AssessmentComment,
    Collection,
    CollectionEntry,
    Instrument,
    ItemScore,
    Performance,
    PerformedPart,
    Programme,
    ProgrammeMember,
)

TRAINING_PURPOSE = "archive_training"
COMMENT_MAX = 2000
# As the library allows for bookmarks: a player may report a time a little past the last frame.
DURATION_TOLERANCE = 0.05


class TrainingError(Exception):
    """A training request that cannot be honoured; the message says what to do about it."""


class TrainingAccessDenied(TrainingError):
    """Refused to this person (audited)."""


def _actor(user: Any) -> str:
    return f"user:{user.pk}" if getattr(user, "is_authenticated", False) else "anonymous"


def _audit(recording: Recording, action: str, user: Any, *, outcome: str = "allowed", **detail: Any) -> None:
    audit_record(
        action=action, actor=_actor(user), outcome=outcome, session_public_id=str(recording.session.public_id),
        target=f"recording:{recording.public_id}", detail=detail,
    )


def _refuse(recording: Recording, action: str, user: Any, message: str) -> TrainingAccessDenied:
    _audit(recording, action, user, outcome="refused", reason=message)
    return TrainingAccessDenied(message)


# ---------------------------------------------------------------- the consent limit


def training_consent_require(*, recording: Recording, user: Any, action: str) -> None:
    """The consent limit of everything training does with a recording: it must be available and
    the patient's consent in force must grant archive_training (asked at consent's one gate, which
    audits a refusal); and ``user`` must be allowed to view it (recordings' access check, which
    narrows faculty and residents to their programme's recordings and the library, audited)."""
    if recording.status != Recording.Status.AVAILABLE:
        raise _refuse(recording, action, user, f"This recording is {recording.get_status_display().lower()}: it cannot be used for training.")
    try:
        consent_services.consent_require(session=recording.session, purpose=TRAINING_PURPOSE, actor=_actor(user), action=action)
    except consent_services.ConsentError:
        raise TrainingAccessDenied(
            "The patient did not consent to the use of this recording for training (archive_training): "
            "it cannot be assessed, curated or shown to residents."
        ) from None
    try:
        recording_services.recording_access_check(recording=recording, user=user, action=action)
    except recording_services.RecordingAccessDenied as refusal:
        raise TrainingAccessDenied(str(refusal)) from None


def training_allowed(recording: Recording) -> bool:
    """The same limit as a filter for lists (a list is not an act: nothing is audited)."""
    return recording.status == Recording.Status.AVAILABLE and consent_services.consent_granted(
        session=recording.session, purpose=TRAINING_PURPOSE
    )


# ---------------------------------------------------------------- programmes and people

ROLE_GROUPS = {
    ProgrammeMember.Role.DIRECTOR: (roles.PROGRAMME_DIRECTOR, roles.FACULTY),
    ProgrammeMember.Role.FACULTY: (roles.FACULTY,),
    ProgrammeMember.Role.RESIDENT: (roles.RESIDENT,),
}


def programme_create(*, name: str, specialty: str, blind_assessment: bool = True) -> Programme:
    if not name.strip() or not specialty.strip():
        raise TrainingError("A programme needs a name and a specialty.")
    return Programme.objects.create(name=name.strip(), specialty=specialty.strip(), blind_assessment=blind_assessment)


def programme_member_add(*, programme: Programme, user: Any, role: str, year: int | None = None) -> ProgrammeMember:
    """Put ``user`` in ``programme`` as director, faculty or resident, and in the matching groups
    (a director is faculty too): the groups are what the rest of the site asks (orstream.roles)."""
    if role not in ProgrammeMember.Role.values:
        raise TrainingError(f"A member is one of: {', '.join(ProgrammeMember.Role.labels)}.")
    member, _ = ProgrammeMember.objects.get_or_create(programme=programme, user=user, role=role, defaults={"year": year})
    for name in ROLE_GROUPS[ProgrammeMember.Role(role)]:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return member


def _programmes_as(user: Any, *member_roles: str) -> QuerySet[Programme]:
    if not getattr(user, "is_authenticated", False):
        return Programme.objects.none()
    return Programme.objects.filter(members__user=user, members__role__in=member_roles).distinct()


def programmes_directed_by(*, user: Any) -> QuerySet[Programme]:
    return _programmes_as(user, ProgrammeMember.Role.DIRECTOR)


def programmes_taught_by(*, user: Any) -> QuerySet[Programme]:
    """Where ``user`` is faculty or director."""
    return _programmes_as(user, ProgrammeMember.Role.FACULTY, ProgrammeMember.Role.DIRECTOR)


def _is_member(user: Any, programme: Programme, *member_roles: str) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and programme.members.filter(user=user, role__in=member_roles).exists()


def _directs(user: Any, programme: Programme) -> bool:
    return _is_member(user, programme, ProgrammeMember.Role.DIRECTOR)


def _teaches(user: Any, programme: Programme) -> bool:
    return roles.user_is_faculty(user) and _is_member(user, programme, ProgrammeMember.Role.FACULTY, ProgrammeMember.Role.DIRECTOR)


def residents_of(*, programme: Programme) -> list[Any]:
    return [m.user for m in programme.members.filter(role=ProgrammeMember.Role.RESIDENT).select_related("user")]


def faculty_of(*, programme: Programme) -> list[Any]:
    members = programme.members.filter(role__in=[ProgrammeMember.Role.FACULTY, ProgrammeMember.Role.DIRECTOR])
    return sorted({m.user for m in members.select_related("user")}, key=lambda u: u.username)


# ---------------------------------------------------------------- who operated


def performance_record(
    *, session: Session, programme: Programme, resident: Any, by: Any, parts: list[tuple[Recording, float, float, str]]
) -> Performance:
    """Record that ``resident`` operated in ``session`` for ``programme``, and the parts they
    performed (recording, start, end, label: time ranges on that recording's timeline).
    The operating surgeon and coordinators record it; the programme's faculty too, for a resident
    who took part in the session (faculty see only their programme's recordings, training.scope)."""
    if not (_teaches(by, programme) or roles.user_runs_session(by, session)):
        raise TrainingAccessDenied("Only the programme's faculty, the operating surgeon or a coordinator record who operated.")
    took_part = session.participants.filter(user=resident, role=SessionRole.RESIDENT, removed_at__isnull=True).exists()
    if not (roles.user_runs_session(by, session) or took_part):
        raise TrainingAccessDenied(
            "This resident was not a participant of the session: the operating surgeon or a coordinator records who operated."
        )
    if not _is_member(resident, programme, ProgrammeMember.Role.RESIDENT):
        raise TrainingError(f"{resident.get_full_name() or resident.username} is not a resident of {programme}.")
    for recording, start, end, _label in parts:
        if recording.session_id != session.pk:
            raise TrainingError("A performed part must be on one of this session's recordings.")
        duration = recording.duration or 0
        if not (0 <= start < end) or (duration and end > duration + DURATION_TOLERANCE):
            raise TrainingError(f"A part runs from a start to a later end within the recording (0 to {duration:.0f} s).")
    with transaction.atomic():
        performance, _ = Performance.objects.get_or_create(
            session=session, resident=resident, defaults={"programme": programme, "recorded_by": by}
        )
        for recording, start, end, label in parts:
            PerformedPart.objects.create(performance=performance, recording=recording, start=start, end=end, label=label[:120])
        audit_record(
            action="training.performance", actor=_actor(by), session_public_id=str(session.public_id),
            target=f"user:{resident.pk}", detail={"parts": len(parts)},
        )
    return performance


@dataclass
class TrainingRecording:
    recording: Recording
    performances: list[Performance]
    programme: Programme


def training_recordings_for(*, user: Any) -> list[TrainingRecording]:
    """The recordings faculty of a programme review: those whose session a resident of the
    programme operated in, available and with archive_training granted, newest first."""
    programmes = list(programmes_taught_by(user=user)) if roles.user_is_faculty(user) else []
    if not programmes:
        return []
    performances = (
        Performance.objects.filter(programme__in=programmes)
        .select_related("programme", "resident", "session")
        .prefetch_related("parts")
    )
    by_session: dict[int, list[Performance]] = {}
    for performance in performances:
        by_session.setdefault(performance.session_id, []).append(performance)
    recordings = Recording.objects.filter(session_id__in=by_session, status=Recording.Status.AVAILABLE).select_related(
        "session", "session__room"
    )
    return [
        TrainingRecording(recording=r, performances=by_session[r.session_id], programme=by_session[r.session_id][0].programme)
        for r in recordings.order_by("-started_at")
        if training_allowed(r)
    ]


def performances_for(*, recording: Recording) -> list[Performance]:
    return list(
        Performance.objects.filter(session=recording.session).select_related("resident", "programme").prefetch_related("parts")
    )


# ---------------------------------------------------------------- instruments


def instrument_list_active() -> list[Instrument]:
    return list(Instrument.objects.filter(is_active=True).prefetch_related("items"))


def instrument_get(*, pk: Any) -> Instrument | None:
    return Instrument.objects.filter(pk=pk).prefetch_related("items").first()


# ---------------------------------------------------------------- assessments


def _programme_of(recording: Recording, resident: Any) -> Programme:
    performance = Performance.objects.filter(session=recording.session, resident=resident).select_related("programme").first()
    if performance is None:
        raise TrainingError(
            f"{resident.get_full_name() or resident.username} is not recorded as operating in this session; record who operated first."
        )
    return performance.programme


def assessment_assign(
    *, recording: Recording, resident: Any, rater: Any, instrument: Instrument, by: Any,
    part_start: float | None = None, part_end: float | None = None,
) -> Assessment:
    """A programme director assigns ``rater`` (faculty of the programme) to score ``resident`` on
    ``recording`` (or the part ``part_start``..``part_end``) with ``instrument``. A faculty
    member may assign themselves. Refused without archive_training."""
    training_consent_require(recording=recording, user=by, action="training.assign")
    programme = _programme_of(recording, resident)
    if not (_directs(by, programme) or (by == rater and _teaches(by, programme))):
        raise _refuse(recording, "training.assign", by, "Only the programme's director assigns raters; faculty may start their own assessment.")
    if not _teaches(rater, programme):
        raise TrainingError(f"{rater.get_full_name() or rater.username} is not faculty of {programme}: only faculty rate its residents.")
    if rater == resident:
        raise TrainingError("A resident cannot rate their own performance.")
    if not instrument.is_active:
        raise TrainingError(f"{instrument} is no longer in use; choose a current instrument.")
    if (part_start is None) != (part_end is None) or (part_start is not None and part_end is not None and not 0 <= part_start < part_end):
        raise TrainingError("A part to assess runs from a start to a later end; leave both empty to assess the whole recording.")
    try:
        with transaction.atomic():
            assessment = Assessment.objects.create(
                programme=programme, recording=recording, resident=resident, rater=rater, instrument=instrument,
                part_start=part_start, part_end=part_end, assigned_by=by,
            )
    except IntegrityError:
        raise TrainingError(f"{rater.get_full_name() or rater.username} is already assigned to this recording with {instrument}.") from None
    _audit(recording, "training.assign", by, assessment=str(assessment.public_id), rater=rater.pk)
    return assessment


def assessment_get(*, public_id: Any) -> Assessment | None:
    return (
        Assessment.objects.select_related("recording", "recording__session", "instrument", "rater", "resident", "programme")
        .filter(public_id=public_id)
        .first()
    )


def _own(assessment: Assessment, user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and assessment.rater_id == user.pk


def assessment_visible(*, assessment: Assessment, user: Any) -> bool:
    """May ``user`` read ``assessment``'s scores and comments? The blinding rule, in one place:

    - the rater, always (their own);
    - nobody else before it is submitted;
    - once submitted: the programme's director; the assessed resident; another rater of the same
      recording, resident and instrument only after submitting their own (in a blind programme;
      without blinding, any of the programme's faculty).
    """
    if _own(assessment, user):
        return True
    if not assessment.is_submitted or not getattr(user, "is_authenticated", False):
        return False
    if assessment.resident_id == user.pk or _directs(user, assessment.programme):
        return True
    if not _teaches(user, assessment.programme):
        return False
    if not assessment.programme.blind_assessment:
        return True
    return Assessment.objects.filter(
        recording=assessment.recording_id, resident=assessment.resident_id, instrument=assessment.instrument_id,
        rater=user, submitted_at__isnull=False,
    ).exists()


def assessment_open(*, assessment: Assessment, user: Any) -> Assessment:
    """Open ``assessment`` for reading (checked against the blinding rule and the consent limit;
    audited as a view, refusals too)."""
    training_consent_require(recording=assessment.recording, user=user, action="training.assessment.view")
    if not assessment_visible(assessment=assessment, user=user):
        if _own(assessment, user) or not assessment.is_submitted:
            message = "This assessment is not submitted yet: only its rater sees it."
        else:
            message = "Assessments are blind: you see the other raters' scores once you have submitted your own."
        raise _refuse(assessment.recording, "training.assessment.view", user, message)
    _audit(assessment.recording, "training.assessment.view", user, assessment=str(assessment.public_id))
    return assessment


def _editable(assessment: Assessment, user: Any, action: str) -> None:
    training_consent_require(recording=assessment.recording, user=user, action=action)
    if not _own(assessment, user):
        raise _refuse(assessment.recording, action, user, "Only the assigned rater scores this assessment.")
    if assessment.is_submitted:
        raise TrainingError("This assessment is submitted and final; it can no longer be changed.")


def assessment_score(*, assessment: Assessment, user: Any, scores: dict[str, int], summary: str | None = None) -> Assessment:
    """Save the rater's scores by item key (a draft until submitted); each in the item's range."""
    _editable(assessment, user, "training.score")
    items = {i.key: i for i in assessment.instrument.items.all()}
    with transaction.atomic():
        for key, score in scores.items():
            item = items.get(key)
            if item is None:
                raise TrainingError(f"{assessment.instrument} has no item {key!r}.")
            if not item.min_score <= int(score) <= item.max_score:
                raise TrainingError(
                    f"{assessment.instrument.short_name} scores “{item.name}” from {item.min_score} to {item.max_score}; "
                    f"{score} is outside that range. Nothing was saved: choose a score in the range and save again."
                )
            ItemScore.objects.update_or_create(assessment=assessment, item=item, defaults={"score": int(score)})
        if summary is not None:
            assessment.summary = summary.strip()[:COMMENT_MAX]
            assessment.save(update_fields=["summary"])
    return assessment


def _comment_label(assessment: Assessment, item: Any, text: str) -> str:
    """The comment as its bookmark's label: "OSATS · Respect for tissue: gentle retraction…"."""
    label = f"{assessment.instrument.short_name}{f' · {item.name}' if item else ''}: {text}"
    limit = recording_services.BOOKMARK_LABEL_MAX
    return label if len(label) <= limit else label[: limit - 1] + "…"


def assessment_comment_add(
    *, assessment: Assessment, user: Any, media_time: float, text: str, item_key: str = ""
) -> AssessmentComment:
    """A time-stamped comment (on an item, or the whole performance) at ``media_time`` of the
    recording. Its moment is a private bookmark of the recording, so the library's player lists
    it and jumps to it like any mark, for the rater now and for the others once the blinding rule
    lets them read the assessment (comment_bookmarks_revealed)."""
    _editable(assessment, user, "training.comment")
    text = text.strip()
    if not text:
        raise TrainingError("Write the comment first, e.g. \"good traction here\".")
    item = None
    if item_key:
        item = assessment.instrument.items.filter(key=item_key).first()
        if item is None:
            raise TrainingError(f"{assessment.instrument} has no item {item_key!r}.")
    with transaction.atomic():
        try:
            bookmark = recording_services.bookmark_add(
                recording=assessment.recording, user=user, media_time=float(media_time),
                label=_comment_label(assessment, item, text), private=True,
            )
        except recording_services.RecordingAccessDenied as refusal:
            raise TrainingAccessDenied(str(refusal)) from None
        except recording_services.RecordingError as problem:
            raise TrainingError(str(problem)) from None
        return AssessmentComment.objects.create(assessment=assessment, item=item, bookmark=bookmark, text=text[:COMMENT_MAX])


def comment_bookmarks_revealed(user: Any, recording: Recording) -> Q | None:
    """The private bookmarks of ``recording`` that are comments of assessments ``user`` may read
    (the blinding rule, assessment_visible); registered with recordings' bookmark_reveals, so the
    library's player shows a rater's comments to nobody the assessment page would not."""
    readable = [
        a.pk for a in Assessment.objects.filter(recording=recording).select_related("programme")
        if assessment_visible(assessment=a, user=user)
    ]
    return Q(assessment_comment__assessment__in=readable) if readable else None


def assessment_submit(*, assessment: Assessment, user: Any) -> Assessment:
    """Submit: every item must be scored. From now on the scores are final and the rater sees the
    other raters' submitted scores of this recording."""
    _editable(assessment, user, "training.submit")
    missing = [i.name for i in assessment.instrument.items.all() if not assessment.scores.filter(item=i).exists()]
    if missing:
        raise TrainingError(f"Score every item before submitting; missing: {', '.join(missing)}.")
    with transaction.atomic():
        assessment.submitted_at = timezone.now()
        assessment.save(update_fields=["submitted_at"])
        _audit(assessment.recording, "training.submit", user, assessment=str(assessment.public_id))
    return assessment


@dataclass
class AssessmentCard:
    assessment: Assessment
    visible: bool
    total: int | None = None
    scores: dict[str, int] = field(default_factory=dict)
    comments: list[AssessmentComment] = field(default_factory=list)


def assessment_card(*, assessment: Assessment, user: Any) -> AssessmentCard:
    """What ``user`` may see of ``assessment``: its scores and comments, or only that it exists."""
    if not assessment_visible(assessment=assessment, user=user):
        return AssessmentCard(assessment=assessment, visible=False)
    scores = {s.item.key: s.score for s in assessment.scores.select_related("item")}
    return AssessmentCard(
        assessment=assessment, visible=True, total=sum(scores.values()) if scores else None, scores=scores,
        comments=list(assessment.comments.select_related("item", "bookmark")),
    )


def assessment_list_for_recording(*, recording: Recording, user: Any) -> list[AssessmentCard]:
    """The assessments of ``recording`` for the people who may know of them (its programme's
    faculty, and the assessed resident for their own submitted ones), each blinded as it must be."""
    cards = []
    query = Assessment.objects.filter(recording=recording).select_related("instrument", "rater", "resident", "programme")
    for assessment in query.order_by("instrument__short_name", "created_at"):
        if _teaches(user, assessment.programme) or assessment_visible(assessment=assessment, user=user):
            cards.append(assessment_card(assessment=assessment, user=user))
    return cards


def assessment_list_for(*, user: Any) -> list[AssessmentCard]:
    """Every assessment ``user`` may know of: as rater, as assessed resident (submitted), as director
    or faculty of the programme (blinded as the rule says)."""
    if not getattr(user, "is_authenticated", False):
        return []
    taught = programmes_taught_by(user=user)
    query = Assessment.objects.filter(
        Q(rater=user) | Q(resident=user, submitted_at__isnull=False) | Q(programme__in=taught)
    ).select_related("instrument", "rater", "resident", "programme", "recording", "recording__session")
    return [assessment_card(assessment=a, user=user) for a in query.distinct().order_by("-created_at")]


def assessment_assignments_for(*, user: Any) -> list[Assessment]:
    """The rater's open assessments, oldest first."""
    return list(
        Assessment.objects.filter(rater=user, submitted_at__isnull=True)
        .select_related("instrument", "resident", "recording", "recording__session")
        .order_by("created_at")
    )


def assessments_for_export(*, user: Any) -> list[Assessment]:
    """The submitted assessments of the programmes ``user`` directs, on recordings still
    consented for training (for the programme's records: CSV, FHIR)."""
    directed = programmes_directed_by(user=user)
    if not directed.exists():
        audit_record(action="training.export", actor=_actor(user), outcome="refused")
        raise TrainingAccessDenied("Exports of assessments are for programme directors.")
    query = (
        Assessment.objects.filter(programme__in=directed, submitted_at__isnull=False)
        .select_related("programme", "instrument", "recording", "recording__session", "resident", "rater")
        .prefetch_related("scores", "comments__bookmark", "instrument__items")
        .order_by("submitted_at")
    )
    chosen = [a for a in query if training_allowed(a.recording)]
    audit_record(action="training.export", actor=_actor(user), detail={"assessments": len(chosen)})
    return chosen


# ---------------------------------------------------------------- progress


@dataclass
class ProgressPoint:
    at: datetime
    total: int
    maximum: int
    assessment: Assessment


@dataclass
class ProgressSeries:
    instrument: Instrument
    points: list[ProgressPoint]
    comments: list[AssessmentComment]


def progress_for(*, resident: Any, user: Any) -> list[ProgressSeries]:
    """``resident``'s submitted assessments over time, per instrument, with the raters' comments.
    The resident sees their own; a director of one of their programmes sees anyone's in it."""
    if not getattr(user, "is_authenticated", False):
        raise TrainingAccessDenied("Sign in to see progress.")
    if user.pk != resident.pk and not programmes_directed_by(user=user).filter(
        members__user=resident, members__role=ProgrammeMember.Role.RESIDENT
    ).exists():
        audit_record(
            action="training.progress.view", actor=_actor(user), outcome="refused", target=f"user:{resident.pk}",
        )
        raise TrainingAccessDenied("Only the resident and their programme director see a resident's progress.")
    series: dict[int, ProgressSeries] = {}
    query = (
        Assessment.objects.filter(resident=resident, submitted_at__isnull=False)
        .select_related("instrument", "recording", "recording__session", "rater")
        .prefetch_related("scores", "comments__bookmark", "comments__item", "instrument__items")
        .order_by("submitted_at")
    )
    for assessment in query:
        if not training_allowed(assessment.recording):
            continue  # consent narrowed since: the video moments can no longer be shown
        items = list(assessment.instrument.items.all())
        entry = series.setdefault(assessment.instrument_id, ProgressSeries(assessment.instrument, [], []))
        entry.points.append(ProgressPoint(
            at=assessment.submitted_at or assessment.created_at, total=sum(s.score for s in assessment.scores.all()),
            maximum=sum(i.max_score for i in items), assessment=assessment,
        ))
        entry.comments.extend(assessment.comments.all())
    if user.pk != resident.pk:
        audit_record(action="training.progress.view", actor=_actor(user), target=f"user:{resident.pk}")
    return sorted(series.values(), key=lambda s: s.instrument.short_name)


@dataclass
class CohortRow:
    resident: Any
    programme: Programme
    submitted: int
    latest: dict[str, int]


def cohort_for(*, user: Any) -> list[CohortRow]:
    """A director's residents: how many submitted assessments each has, and the latest total per instrument."""
    rows = []
    for programme in programmes_directed_by(user=user):
        for resident in residents_of(programme=programme):
            done = Assessment.objects.filter(programme=programme, resident=resident, submitted_at__isnull=False).select_related("instrument")
            latest: dict[str, int] = {}
            for assessment in done.order_by("submitted_at").prefetch_related("scores"):
                latest[assessment.instrument.short_name] = sum(s.score for s in assessment.scores.all())
            rows.append(CohortRow(resident=resident, programme=programme, submitted=done.count(), latest=latest))
    return rows


# ---------------------------------------------------------------- model-procedure library


def collection_create(*, title: str, specialty: str, procedure: str, by: Any, description: str = "") -> Collection:
    if not roles.user_is_faculty(by):
        raise TrainingAccessDenied("Only faculty curate the model-procedure library.")
    if not (title.strip() and specialty.strip() and procedure.strip()):
        raise TrainingError("A collection needs a title, a specialty and a procedure.")
    return Collection.objects.create(
        title=title.strip(), specialty=specialty.strip(), procedure=procedure.strip(), description=description.strip(), created_by=by
    )


def collection_entry_add(
    *, collection: Collection, recording: Recording, by: Any, note: str,
    start: float = 0.0, end: float | None = None, chapter: Bookmark | None = None,
) -> CollectionEntry:
    """Add a recording, or a range of it, to ``collection`` with a teaching note. With ``chapter``,
    the range runs from that chapter to the next one (or the end). Refused without archive_training."""
    training_consent_require(recording=recording, user=by, action="training.curate")
    if not roles.user_is_faculty(by):
        raise _refuse(recording, "training.curate", by, "Only faculty curate the model-procedure library.")
    if not note.strip():
        raise TrainingError("Add a short teaching note: what should a resident watch for?")
    duration = recording.duration or 0
    if chapter is not None:
        if chapter.recording_id != recording.pk or chapter.kind != Bookmark.Kind.CHAPTER:
            raise TrainingError("Choose a chapter of this recording.")
        start = chapter.media_time
        following = recording.bookmarks.filter(kind=Bookmark.Kind.CHAPTER, media_time__gt=start).order_by("media_time").first()
        end = following.media_time if following else None
    if start < 0 or (end is not None and end <= start) or (duration and start > duration):
        raise TrainingError(f"The range runs from a start to a later end within the recording (0 to {duration:.0f} s).")
    entry = CollectionEntry.objects.create(
        collection=collection, recording=recording, start=start, end=end, chapter=chapter, note=note.strip(),
        order=collection.entries.count(), added_by=by,
    )
    _audit(recording, "training.curate", by, collection=collection.pk, entry=entry.pk)
    return entry


def collection_list() -> list[Collection]:
    return list(Collection.objects.all())


def collection_get(*, pk: Any) -> Collection | None:
    return Collection.objects.filter(pk=pk).first()


def collection_entries_for(*, collection: Collection, user: Any) -> list[CollectionEntry]:
    """The entries ``user`` may watch: only recordings still available with archive_training in
    force (a narrowed consent drops an entry from the list at once); the player checks again."""
    if not getattr(user, "is_authenticated", False):
        return []
    entries = collection.entries.select_related("recording", "recording__session", "recording__session__room", "chapter")
    return [e for e in entries if training_allowed(e.recording)]


def watch_before_for(*, session: Session, user: Any) -> list[CollectionEntry]:
    """Model procedures to watch before ``session``: entries of collections of the same procedure
    (compared without case), for a session still to come."""
    if session.status != Session.Status.SCHEDULED:
        return []
    entries: list[CollectionEntry] = []
    for collection in Collection.objects.filter(procedure__iexact=session.procedure.strip()):
        entries.extend(collection_entries_for(collection=collection, user=user))
    return entries


def sessions_upcoming_for(*, user: Any) -> list[tuple[Session, list[CollectionEntry]]]:
    """A resident's scheduled sessions (as participant) with what to watch before each."""
    if not getattr(user, "is_authenticated", False):
        return []
    sessions = Session.objects.filter(
        status=Session.Status.SCHEDULED, participants__user=user, participants__removed_at__isnull=True
    ).select_related("room").distinct()
    return [(s, watch_before_for(session=s, user=user)) for s in sessions.order_by("planned_start")]
