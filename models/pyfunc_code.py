"""Entry point MLflow executes to rebuild the pyfunc ("models from code"); never imported by leadscore."""

import mlflow

from leadscore.models.pyfunc import LeadscorePyfunc

mlflow.models.set_model(LeadscorePyfunc())
