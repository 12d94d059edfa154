"""Export a training run for the appliance: torch -> ONNX -> OpenVINO IR (f32, and INT8 on request)."""


class ExportError(RuntimeError):
    """The export cannot be trusted: parity failed or its inputs are missing; the message says which."""
