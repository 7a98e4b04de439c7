"""A rater's comment keeps its moment as a private bookmark of the recording: the comments there
are moved onto one bookmark each (labelled as the service labels them), then their own time goes."""

import django.db.models.deletion
from django.db import migrations, models

LABEL_MAX = 120


def comments_to_bookmarks(apps, schema_editor):
    Bookmark = apps.get_model("recordings", "Bookmark")
    AssessmentComment = apps.get_model("training", "AssessmentComment")
    for comment in AssessmentComment.objects.select_related("assessment", "assessment__instrument", "item"):
        label = f"{comment.assessment.instrument.short_name}"
        label += f" · {comment.item.name}: " if comment.item_id else ": "
        label += comment.text
        if len(label) > LABEL_MAX:
            label = label[: LABEL_MAX - 1] + "…"
        comment.bookmark = Bookmark.objects.create(
            recording_id=comment.assessment.recording_id, media_time=comment.media_time, label=label, kind="bookmark",
            created_by_id=comment.assessment.rater_id, created_at=comment.created_at, private=True,
        )
        comment.save(update_fields=["bookmark"])


def bookmarks_to_comments(apps, schema_editor):
    AssessmentComment = apps.get_model("training", "AssessmentComment")
    for comment in AssessmentComment.objects.select_related("bookmark"):
        comment.media_time = comment.bookmark.media_time
        comment.save(update_fields=["media_time"])


class Migration(migrations.Migration):
    dependencies = [
        ("recordings", "0008_bookmark_private"),
        ("training", "0002_published_instruments"),
    ]

    operations = [
        migrations.AddField(
            model_name="assessmentcomment", name="bookmark",
            field=models.OneToOneField(null=True, on_delete=django.db.models.deletion.PROTECT,
                                       related_name="assessment_comment", to="recordings.bookmark"),
        ),
        migrations.AlterField(model_name="assessmentcomment", name="media_time", field=models.FloatField(null=True)),
        migrations.RunPython(comments_to_bookmarks, bookmarks_to_comments),
        migrations.RemoveConstraint(model_name="assessmentcomment", name="assessment_comment_time"),
        migrations.AlterModelOptions(name="assessmentcomment", options={"ordering": ["assessment", "bookmark__media_time", "pk"]}),
        migrations.RemoveField(model_name="assessmentcomment", name="media_time"),
        migrations.AlterField(
            model_name="assessmentcomment", name="bookmark",
            field=models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name="assessment_comment",
                                       to="recordings.bookmark"),
        ),
    ]
