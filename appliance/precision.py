"""`--precision auto`: the fastest precision this export and this CPU run without losing accuracy.

    int8  the export holds model-int8.xml and its card says it passed the export's accuracy gate
    bf16  the CPU computes bf16 natively (AMX or AVX512-BF16): ~2x f32 on Zen 5, ~3.7x on AMX Xeons
    f32   otherwise (OpenVINO would emulate bf16, slower than f32)

The choice and its reason are printed by the commands and recorded in summary.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import openvino as ov

MODEL_XML, MODEL_INT8_XML = "model.xml", "model-int8.xml"
# The instruction sets that make a precision fast, as /proc/cpuinfo names them.
NATIVE_BF16 = ("amx_bf16", "avx512_bf16")
NATIVE_INT8 = ("amx_int8", "avx512_vnni", "avx_vnni")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Choice:
    precision: str
    reason: str


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The first processor's flags (every core of a server has the same); empty where unreadable."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ov.Core().get_property("CPU", "FULL_DEVICE_NAME")


def int8_gate(xml: Path) -> dict | None:
    """The accuracy gate an INT8 export recorded in its rt_info, or None (not exported through the gate)."""
    network = ov.Core().read_model(xml)
    if not network.has_rt_info(["model_info", "int8_gate"]):
        return None
    return json.loads(network.get_rt_info(["model_info", "int8_gate"]).astype(str))


def choose_precision(model: Path | str, requested: str = "auto", flags: set[str] | None = None) -> Choice:
    """The precision to run `model` (an export folder or an .xml) at; `requested` other than auto is kept."""
    if requested != "auto":
        return Choice(requested, "given")
    model = Path(model)
    flags = cpu_flags() if flags is None else flags
    int8_xml = model / MODEL_INT8_XML if model.is_dir() else model
    if int8_xml.name == MODEL_INT8_XML and int8_xml.is_file():
        gate = int8_gate(int8_xml)
        if gate and gate.get("passed"):
            return Choice(
                "int8",
                f"{int8_xml.name} passed the export's accuracy gate (top-1 drop {gate['drop_points']:+.1f} points "
                f"on {gate['fields']} held-out fields, allowed {gate['max_drop']:g})",
            )
        why = "was forced past its accuracy gate" if gate else "records no accuracy gate"
        if not model.is_dir():  # the INT8 .xml itself was named: it can only run as int8
            return Choice("int8", f"{int8_xml.name} was named ({why})")
        skipped = f"; {MODEL_INT8_XML} not used: it {why}"
    else:
        skipped = ""
    native = sorted(flags & set(NATIVE_BF16))
    if native:
        return Choice("bf16", f"the CPU computes bf16 natively ({', '.join(native)}){skipped}")
    return Choice("f32", f"the CPU has no native bf16 (no {' or '.join(NATIVE_BF16)}){skipped}")
