from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "evalsite.annotation"
    label = "annotation"
    verbose_name = "Human annotation"

    def ready(self) -> None:
        from evalsite.annotation.export import register_exports
        from evalsite.annotation.models import studies_holding
        from evalsite.catalog.io import RESPONSE_HOLDERS

        register_exports()
        RESPONSE_HOLDERS.append(studies_holding)
