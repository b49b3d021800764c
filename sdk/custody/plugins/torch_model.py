"""PyTorch modules: framework and version, class, parameter count, and, when ``log_model`` got no
``path``, a digest of the state dict (sha256 over each tensor's name, dtype, shape and bytes)."""

from __future__ import annotations

import hashlib
import sys
from typing import Any, Dict, Optional

from custody.plugins import hookimpl


def state_digest(module: Any) -> str:
    torch = sys.modules["torch"]
    h = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        h.update(f"{key}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
        h.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


@hookimpl
def custody_model_info(model: Any, path: Optional[str]) -> Optional[Dict[str, Any]]:
    torch = sys.modules.get("torch")
    if torch is None or model is None or not isinstance(model, torch.nn.Module):
        return None
    cls = type(model)
    info: Dict[str, Any] = {
        "framework": "pytorch",
        "frameworkVersion": str(getattr(torch, "__version__", "")) or None,
        "modelClass": f"{cls.__module__}.{cls.__qualname__}",
        "hyperparameters": {
            "parameterCount": int(sum(p.numel() for p in model.parameters())),
            "trainableParameterCount": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        },
    }
    if path is None:
        info["artifactDigest"] = state_digest(model)
        info["artifactFormat"] = "state_dict"
    return info
