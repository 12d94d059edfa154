"""What every IR the runtime runs takes: raw uint16 pixels, converted and normalised inside the graph.

export/ir.py puts the exported network behind `raw_input`; tests/tiny_ir.py its hand-built one,
so the runtime's tests run the preprocessing the export writes.
"""

from __future__ import annotations

import openvino as ov

from appliance.normalization import Normalization

INPUT = "fields"  # the network's input; the runtime reads input 0 whatever its name


def raw_input(model: ov.Model, normalization: Normalization) -> ov.Model:
    """The network behind a PrePostProcessor: uint16 NCHW in, conversion and (x - mean) / std in the graph.

    The pixels go uint16 -> int32 -> float32. With a direct uint16 -> float32 Convert, the CPU
    plugin's low-precision transformations read Convert-Subtract-Multiply as an int8
    dequantisation and fold it into the first FakeQuantize of a quantized model, which oneDNN
    cannot run on uint16 ("CPU plugin does not support u16"). The extra step costs nothing measurable.
    """
    ppp = ov.preprocess.PrePostProcessor(model)
    ppp.input(INPUT).tensor().set_element_type(ov.Type.u16).set_layout(ov.Layout("NCHW"))
    ppp.input(INPUT).model().set_layout(ov.Layout("NCHW"))
    (
        ppp.input(INPUT)
        .preprocess()
        .convert_element_type(ov.Type.i32)
        .convert_element_type(ov.Type.f32)
        .mean(list(normalization.mean))
        .scale(list(normalization.std))
    )
    return ppp.build()
