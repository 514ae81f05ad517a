"""An embedding family's MLflow model, logged as code (MLflow's models-from-code), so nothing is cloudpickled."""

from mlflow.models import set_model

from tasks.track.pyfunc import FamilyEmbedderModel

set_model(FamilyEmbedderModel())
