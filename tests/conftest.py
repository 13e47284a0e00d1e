"""Test-session setup.

Triton reads TRITON_INTERPRET once, when it is first imported — and torch.compile
imports it too — so it is set here, before any test module runs: without an
NVIDIA GPU, the generated kernels run in Triton's interpreter on the CPU.
"""
import os
import shutil

if "TRITON_INTERPRET" not in os.environ and not (os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi")):
    os.environ["TRITON_INTERPRET"] = "1"
