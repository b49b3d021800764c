"""scikit-learn estimators: framework and version, class, hyperparameters (``get_params(deep=False)``),
and, when ``log_model`` got no ``path``, a digest of the pickled estimator."""

from __future__ import annotations

import hashlib
import pickle
import sys
from typing import Any, Dict, Optional

from custody._util import json_safe
from custody.plugins import hookimpl


@hookimpl
def custody_model_info(model: Any, path: Optional[str]) -> Optional[Dict[str, Any]]:
    sklearn = sys.modules.get("sklearn")
    base = sys.modules.get("sklearn.base")
    if sklearn is None or base is None or model is None or not isinstance(model, base.BaseEstimator):
        return None
    cls = type(model)
    info: Dict[str, Any] = {
        "framework": "scikit-learn",
        "frameworkVersion": getattr(sklearn, "__version__", None),
        "modelClass": f"{cls.__module__}.{cls.__qualname__}",
    }
    try:
        info["hyperparameters"] = json_safe(model.get_params(deep=False))
    except Exception:
        pass
    if path is None:
        data = pickle.dumps(model, protocol=4)
        info["artifactDigest"] = "sha256:" + hashlib.sha256(data).hexdigest()
        info["artifactSize"] = len(data)
        info["artifactFormat"] = "pickle"
    return info
