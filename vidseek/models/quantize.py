"""Dynamic int8 quantisation of linear layers, for query-time models on CPU.

PyTorch's ``torch.ao.quantization.quantize_dynamic`` stores each ``nn.Linear`` weight as int8
with a per-tensor scale and quantises activations on the fly; on x86 (fbgemm) a linear layer
then reads a quarter of the bytes, which is what bounds batch-1 inference on a CPU. The API is
deprecated in favour of torchao but remains the fast CPU path in the torch versions we support;
if a future torch drops it, callers get a :class:`~vidseek.errors.ModelError` saying so.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import ModelError

__all__ = ["check_quantizable", "quantize_linear_layers"]


def check_quantizable(module: nn.Module, what: str):
    """Raise :class:`ModelError` unless ``module`` can be quantised here (float32 on CPU, a
    torch with dynamic quantisation); returns ``torch.ao.quantization``."""
    tensor = next(module.parameters(), None)
    if tensor is not None and (tensor.device.type != "cpu" or tensor.dtype != torch.float32):
        raise ModelError(f"{what}: int8 inference runs on a float32 model on CPU "
                         f"(this one: {tensor.dtype} on {tensor.device})")
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    quantization = getattr(getattr(torch, "ao", None), "quantization", None)
    if not engines or quantization is None or not hasattr(quantization, "quantize_dynamic"):
        raise ModelError(f"{what}: int8 inference needs PyTorch's dynamic quantisation "
                         "(torch.ao.quantization with a CPU engine), which this torch lacks")
    return quantization


def quantize_linear_layers(module: nn.Module, what: str) -> None:
    """Replace every ``nn.Linear`` inside ``module`` (in place) by a dynamic int8 one.

    ``what`` names the model in errors. The module must be float32 on CPU.
    """
    quantization = check_quantizable(module, what)
    with warnings.catch_warnings():  # the deprecation notices, on every call
        warnings.simplefilter("ignore")
        quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
