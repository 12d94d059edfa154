"""mcnn-appliance: classify microscopy screening plates with the multiscale CNN on CPUs.

This package is the runtime. It must never import torch: the runtime image ships without it.
"""

__version__ = "0.1.0"
