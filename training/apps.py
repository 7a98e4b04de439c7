from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training"

    def ready(self) -> None:
        from recordings.services import recording_scopes

        from .scope import training_recording_scope

        # Faculty and residents see their programme's recordings and the curated library's.
        recording_scopes.register("training.programmes", training_recording_scope)
