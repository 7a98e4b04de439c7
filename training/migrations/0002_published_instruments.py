"""The published instruments orstream ships with, as data: OSATS global rating scale, GOALS, GEARS
and SMaRT. A centre adds its own (or a new version of one of these) in the admin.

Anchors are given for the scores the publications describe (1, 3 and 5); 2 and 4 lie between them.
The data is frozen here, as the migration ran: a later change to an instrument is a new version.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

OSATS = {
    "slug": "osats-grs",
    "version": "1997",
    "short_name": "OSATS",
    "name": "Objective Structured Assessment of Technical Skill: global rating scale",
    "description": "Seven operative behaviours, each rated 1 to 5.",
    "source": (
        "Martin JA, Regehr G, Reznick R, et al. Objective structured assessment of technical skill (OSATS) "
        "for surgical residents. Br J Surg 1997;84:273-8; Reznick R et al., Am J Surg 1997;173:226-30. "
        "Items and anchors as published (anchors at 1, 3 and 5)."
    ),
    "items": [
        ("respect-for-tissue", "Respect for tissue", {
            "1": "Frequently used unnecessary force on tissue or caused damage by inappropriate use of instruments",
            "3": "Careful handling of tissue but occasionally caused inadvertent damage",
            "5": "Consistently handled tissues appropriately with minimal damage"}),
        ("time-and-motion", "Time and motion", {
            "1": "Many unnecessary moves",
            "3": "Efficient time/motion but some unnecessary moves",
            "5": "Economy of movement and maximum efficiency"}),
        ("instrument-handling", "Instrument handling", {
            "1": "Repeatedly makes tentative or awkward moves with instruments",
            "3": "Competent use of instruments although occasionally appeared stiff or awkward",
            "5": "Fluid moves with instruments and no awkwardness"}),
        ("knowledge-of-instruments", "Knowledge of instruments", {
            "1": "Frequently asked for the wrong instrument or used an inappropriate instrument",
            "3": "Knew the names of most instruments and used appropriate instrument for the task",
            "5": "Obviously familiar with the instruments required and their names"}),
        ("use-of-assistants", "Use of assistants", {
            "1": "Consistently placed assistants poorly or failed to use assistants",
            "3": "Good use of assistants most of the time",
            "5": "Strategically used assistant to the best advantage at all times"}),
        ("flow-of-operation", "Flow of operation and forward planning", {
            "1": "Frequently stopped operating or needed to discuss next move",
            "3": "Demonstrated ability for forward planning with steady progression of operative procedure",
            "5": "Obviously planned course of operation with effortless flow from one move to the next"}),
        ("knowledge-of-procedure", "Knowledge of specific procedure", {
            "1": "Deficient knowledge. Needed specific instruction at most operative steps",
            "3": "Knew all important aspects of the operation",
            "5": "Demonstrated familiarity with all aspects of the operation"}),
    ],
}

GOALS = {
    "slug": "goals",
    "version": "2005",
    "short_name": "GOALS",
    "name": "Global Operative Assessment of Laparoscopic Skills",
    "description": "Five domains of laparoscopic performance, each rated 1 to 5.",
    "source": (
        "Vassiliou MC, Feldman LS, Andrew CG, et al. A global assessment tool for evaluation of intraoperative "
        "laparoscopic skills. Am J Surg 2005;190:107-13. Five domains and anchors as published (1, 3, 5)."
    ),
    "items": [
        ("depth-perception", "Depth perception", {
            "1": "Constantly overshoots target, wide swings, slow to correct",
            "3": "Some overshooting or missing of target, but quick to correct",
            "5": "Accurately directs instruments in the correct plane to target"}),
        ("bimanual-dexterity", "Bimanual dexterity", {
            "1": "Uses only one hand, ignores nondominant hand, poor coordination between hands",
            "3": "Uses both hands, but does not optimize interaction between hands",
            "5": "Expertly uses both hands in a complementary manner to provide optimal exposure"}),
        ("efficiency", "Efficiency", {
            "1": "Uncertain, inefficient efforts; many tentative movements; constantly changing focus or persisting without progress",
            "3": "Slow, but planned movements are reasonably organized",
            "5": "Confident, efficient and safe conduct, maintains focus on task until it is better performed by way of an alternative approach"}),
        ("tissue-handling", "Tissue handling", {
            "1": "Rough movements, tears tissue, injures adjacent structures, poor grasper control, grasper frequently slips",
            "3": "Handles tissues reasonably well, minor trauma to adjacent tissue (ie, occasional unnecessary bleeding or slipping of the grasper)",
            "5": "Handles tissues well, applies appropriate traction, negligible injury to adjacent structures"}),
        ("autonomy", "Autonomy", {
            "1": "Unable to complete entire task, even with verbal guidance",
            "3": "Able to complete task safely with moderate guidance",
            "5": "Able to complete task independently without prompting"}),
    ],
}

GEARS = {
    "slug": "gears",
    "version": "2012",
    "short_name": "GEARS",
    "name": "Global Evaluative Assessment of Robotic Skills",
    "description": "Six domains of robotic performance, each rated 1 to 5.",
    "source": (
        "Goh AC, Goldfarb DW, Sander JC, Miles BJ, Dunkin BJ. Global evaluative assessment of robotic skills: "
        "validation of a clinical assessment tool to measure robotic surgical skills. J Urol 2012;187:247-52. "
        "Six domains and anchors as published (1, 3, 5)."
    ),
    "items": [
        ("depth-perception", "Depth perception", {
            "1": "Constantly overshoots target, wide swinging, slow to correct",
            "3": "Some overshooting or missing of target, but quick to correct",
            "5": "Accurately directs instruments in the correct plane to target"}),
        ("bimanual-dexterity", "Bimanual dexterity", {
            "1": "Uses only one hand, ignores nondominant hand, poor coordination",
            "3": "Uses both hands, but does not optimize interaction between hands",
            "5": "Expertly uses both hands in a complementary way to provide best exposure"}),
        ("efficiency", "Efficiency", {
            "1": "Inefficient efforts; many uncertain movements; constantly changing focus or persisting without progress",
            "3": "Slow, but planned movements are reasonably organized",
            "5": "Confident, efficient and safe conduct, maintains focus on task, fluid progression"}),
        ("force-sensitivity", "Force sensitivity", {
            "1": "Rough moves, tears tissue, injures nearby structures, poor control, frequent suture breakage",
            "3": "Handles tissues reasonably well, minor trauma to adjacent tissue, rare suture breakage",
            "5": "Applies appropriate tension, negligible injury to adjacent structures, no suture breakage"}),
        ("autonomy", "Autonomy", {
            "1": "Unable to complete entire task, even with verbal guidance",
            "3": "Able to complete task safely with moderate guidance",
            "5": "Able to complete task independently without prompting"}),
        ("robotic-control", "Robotic control", {
            "1": "Consistently does not optimize view, hand position, or repeated collisions even with guidance",
            "3": "View is sometimes not optimal. Occasionally needs to relocate arms. Occasional collisions and obstruction of assistant",
            "5": "Controls camera and hand position optimally and independently. Minimal collisions or obstruction of assistant"}),
    ],
}

SMART = {
    "slug": "smart",
    "version": "2014",
    "short_name": "SMaRT",
    "name": "Stanford Microsurgery and Resident Training scale",
    "description": "Nine categories of microsurgical performance, each rated on a 5-point Likert scale.",
    "source": (
        "Satterwhite T, Son J, Carey J, et al. The Stanford Microsurgery and Resident Training (SMaRT) Scale: "
        "validation of an on-line global rating scale for technical assessment. Ann Plast Surg 2014;72 Suppl 1:S84-8. "
        "The abstract confirms 9 categories on a 5-point Likert scale. The category names below could not be "
        "checked against the full text offline, and the anchors are orstream's wording (1 novice, 3 competent, "
        "5 expert), not the published ones: check both against the paper before relying on them."
    ),
    "items": [
        ("instrument-handling", "Instrument handling", {}),
        ("respect-for-tissue", "Respect for tissue", {}),
        ("efficiency", "Efficiency", {}),
        ("suture-handling", "Suture handling", {}),
        ("suturing-technique", "Suturing technique", {}),
        ("quality-of-knot", "Quality of knot", {}),
        ("final-product", "Final product", {}),
        ("operation-flow", "Operation flow", {}),
        ("overall-performance", "Overall performance", {}),
    ],
    "default_anchors": {"1": "Novice: unsafe or unable without guidance", "3": "Competent, with some hesitation",
                        "5": "Expert: fluid, precise and safe"},
}

PUBLISHED = [OSATS, GOALS, GEARS, SMART]


def instruments_load(apps: Any, schema_editor: Any) -> None:
    Instrument = apps.get_model("training", "Instrument")
    InstrumentItem = apps.get_model("training", "InstrumentItem")
    for spec in PUBLISHED:
        instrument, created = Instrument.objects.get_or_create(
            slug=spec["slug"], version=spec["version"],
            defaults={k: spec[k] for k in ("name", "short_name", "description", "source")},
        )
        if not created:
            continue
        for order, (key, name, anchors) in enumerate(spec["items"], start=1):
            InstrumentItem.objects.create(
                instrument=instrument, order=order, key=key, name=name, min_score=1, max_score=5,
                anchors=anchors or spec.get("default_anchors", {}),
            )


def instruments_unload(apps: Any, schema_editor: Any) -> None:
    Instrument = apps.get_model("training", "Instrument")
    for spec in PUBLISHED:
        Instrument.objects.filter(slug=spec["slug"], version=spec["version"], assessments__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("training", "0001_initial")]

    operations = [migrations.RunPython(instruments_load, instruments_unload)]
