from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "evalsite.annotation"
    label = "annotation"
    verbose_name = "Human annotation"

    def ready(self) -> None:
        from evalsite.annotation.export import register_exports

        register_exports()
