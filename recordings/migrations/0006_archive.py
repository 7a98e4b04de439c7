"""The long-term archive: archive copies of recordings and their chunks (recordings.archive)."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('recordings', '0005_viewing'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ArchiveCopy',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('codec', models.CharField(choices=[('av1', 'AV1'), ('hevc', 'HEVC')], default='av1', max_length=8)),
                ('encoder', models.CharField(max_length=32)),
                ('preset', models.CharField(max_length=16)),
                ('crf', models.PositiveSmallIntegerField()),
                ('retry_crf', models.PositiveSmallIntegerField(help_text='The quality a chunk below the threshold is encoded again at.')),
                ('chunk_seconds', models.FloatField()),
                ('vmaf_model', models.CharField(max_length=32)),
                ('vmaf_mean_min', models.FloatField()),
                ('vmaf_chunk_min', models.FloatField()),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('encoding', 'Encoding'), ('joining', 'Joining'), ('accepted', 'Accepted'), ('flagged', 'Needs a person')], default='queued', max_length=10)),
                ('requested_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('chunks_total', models.PositiveIntegerField(default=0)),
                ('key', models.CharField(blank=True, help_text='Storage key of the joined archive file.', max_length=200)),
                ('size', models.PositiveBigIntegerField(default=0)),
                ('sha256', models.CharField(blank=True, max_length=64)),
                ('original_size', models.PositiveBigIntegerField(default=0)),
                ('video_frames', models.PositiveIntegerField(blank=True, null=True)),
                ('duration', models.FloatField(blank=True, null=True)),
                ('vmaf_mean', models.FloatField(blank=True, null=True)),
                ('vmaf_min_chunk', models.FloatField(blank=True, null=True)),
                ('psnr_mean', models.FloatField(blank=True, null=True)),
                ('ssim_mean', models.FloatField(blank=True, null=True)),
                ('cpu_seconds', models.FloatField(default=0, help_text='Encoding and scoring, every chunk and try.')),
                ('note', models.TextField(blank=True, help_text='Why it was flagged, in words the records office can act on.')),
                ('originals_remove_after', models.DateField(blank=True, null=True)),
                ('originals_removed_at', models.DateTimeField(blank=True, null=True)),
                ('recording', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='archive_copies', to='recordings.recording')),
                ('requested_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-requested_at'],
            },
        ),
        migrations.CreateModel(
            name='ArchiveChunk',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('index', models.PositiveIntegerField()),
                ('source_key', models.CharField(max_length=200)),
                ('output_key', models.CharField(max_length=200)),
                ('frames', models.PositiveIntegerField()),
                ('duration', models.FloatField()),
                ('source_size', models.PositiveBigIntegerField()),
                ('status', models.CharField(choices=[('pending', 'Waiting'), ('encoding', 'Encoding'), ('done', 'Done')], default='pending', max_length=10)),
                ('runs', models.PositiveSmallIntegerField(default=0, help_text='Times a worker took this chunk (a crash makes it more than one).')),
                ('tries', models.PositiveSmallIntegerField(default=0, help_text='Encodes of the finished chunk: 2 when it was encoded again at higher quality.')),
                ('worker_pid', models.PositiveIntegerField(blank=True, null=True)),
                ('crf', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('size', models.PositiveBigIntegerField(default=0)),
                ('vmaf_mean', models.FloatField(blank=True, null=True)),
                ('vmaf_min', models.FloatField(blank=True, null=True)),
                ('psnr', models.FloatField(blank=True, null=True)),
                ('ssim', models.FloatField(blank=True, null=True)),
                ('first_vmaf_mean', models.FloatField(blank=True, help_text="The first try's VMAF, when it was encoded again.", null=True)),
                ('cpu_seconds', models.FloatField(default=0)),
                ('encode_seconds', models.FloatField(default=0, help_text='Wall time of the encode that was kept.')),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('archive', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='chunks', to='recordings.archivecopy')),
            ],
            options={
                'ordering': ['archive', 'index'],
            },
        ),
        migrations.AddConstraint(
            model_name='archivecopy',
            constraint=models.UniqueConstraint(fields=('recording', 'codec'), name='archive_copy_one_per_codec'),
        ),
        migrations.AddConstraint(
            model_name='archivechunk',
            constraint=models.UniqueConstraint(fields=('archive', 'index'), name='archive_chunk_index_once'),
        ),
    ]
