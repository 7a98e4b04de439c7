from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training"

    def ready(self) -> None:
        from mentoring.demo import demo_seeders
        from recordings.services import bookmark_reveals, recording_scopes

        from .demo import training_demo_seed
        from .scope import training_recording_scope
        from .services import comment_bookmarks_revealed

        # Faculty and residents see their programme's recordings and the curated library's.
        recording_scopes.register("training.programmes", training_recording_scope)
        # A rater's comments are private bookmarks, shown under the blinding rule.
        bookmark_reveals.register("training.assessment_comments", comment_bookmarks_revealed)
        # `manage.py seed_demo` (make run) adds a programme, its people and an assessed recording.
        demo_seeders.register("training.demo", training_demo_seed)
