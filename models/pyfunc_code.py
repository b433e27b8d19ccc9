"""Entry point MLflow executes to rebuild the pyfunc ("models from code"); never imported by leadscore.

MLflow runs it after putting the model's copy of leadscore first on ``sys.path`` (``pipelines/bundle.py``), so the
import below works where leadscore is not installed.
"""

import mlflow

from leadscore.models.pyfunc import LeadscorePyfunc

mlflow.models.set_model(LeadscorePyfunc())
