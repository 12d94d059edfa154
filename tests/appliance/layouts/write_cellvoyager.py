"""CellVoyager measurements laid out as Yokogawa's CV7000/CV8000 (and CQ3000) write them, for tests.

One folder: MeasurementData.mlf (a bts:MeasurementRecord per image, its file name as text),
MeasurementDetail.mrf (naming the .mes), the .mes (channels' bts:Target labels), the .wpi, and
single-page uint16 TIFFs named `{plate}_{well}_T{t:04d}F{field:03d}L01A{action:02d}Z{z:02d}C{ch:02d}.tif`,
each channel acquired by its own action. Namespace http://www.yokogawa.co.jp/BTS/BTSSchema/1.0,
every attribute prefixed bts:; the .mrf and .wpi start with a UTF-8 BOM, as in the real sample.
Templates (real): fmi-faim/faim-ipa@58f3f07:resources/CV8000/CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack_20230918_135839/
CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack/{MeasurementData.mlf, MeasurementDetail.mrf,
Minimal-3C3W2S-FP2-stack.mes, CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack.wpi}; the ERR record from
fractal-analytics-platform/fractal-uzh-converters@c92a7c4:tests/data/Yokogawa-CellVoyager/raw/hcs_1w1p1c1z1t/
MeasurementData.mlf; the CQ3000 projection records (ZImageProcessing="Maximum",
`Projection/W{(row - 1) * 12 + column:04d}F{field:04d}T{t:04d}Z000C{ch}.tif`) from
fractal-analytics-platform/fractal-uzh-converters@0137eea:tests/data/Yokogawa-CQ3K/raw/hcs_2w1p1c1z1t_mip/.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import tifffile

from appliance.layouts.base import parse_well
from tests.appliance.layouts.same_fields import Images, as_stack
from tests.appliance.layouts.write_harmony import row_number

BTS = 'xmlns:bts="http://www.yokogawa.co.jp/BTS/BTSSchema/1.0"'
TARGETS = ("405", "488", "561")
FILTERS = {"405": "BP445/45", "488": "BP525/50", "561": "BP600/37", "640": "BP676/29"}


def record(row: int, column: int, t: int, field: int, z: int, action: int, ch: int, file: str, mip: bool) -> str:
    processing = ' bts:ZImageProcessing="Maximum" bts:ZTop="76.0000" bts:ZBottom="-20.0000"' if mip else ""
    return (
        f'<bts:MeasurementRecord bts:Type="IMG" bts:Time="2023-09-18T13:58:44.438+02:00" bts:Column="{column}" '
        f'bts:Row="{row}" bts:TimePoint="{t}" bts:FieldIndex="{field}" bts:ZIndex="{z}" bts:TimelineIndex="1" '
        f'bts:ActionIndex="{action}" bts:Action="3D" bts:X="-567.1" bts:Y="402.9" bts:Z="{3.0 * (z - 1)}"'
        f'{processing} bts:Ch="{ch}">{file}</bts:MeasurementRecord>\n'
    )


def write_plate(
    folder: Path,
    images: Images,
    *,
    targets: tuple[str, ...] = TARGETS,
    channel_numbers: tuple[int, ...] = (1, 2, 3),
    extra: tuple[str, ...] = (),
    again: tuple[int, ...] = (),
    projection: bool = False,
    errors: tuple[str, ...] = (),
    plate: str = "AssayPlate",
) -> Path:
    """Write a CellVoyager measurement of the fields; returns its folder (what a user gives `classify`).

    images: (well, site) -> DAPI, Tubulin, Actin arrays, each (h, w), (planes, h, w) or
    (time points, planes, h, w). targets and channel_numbers: the channels' bts:Target and bts:Ch,
    in that order; extra: targets of more channels (zeros), numbers following; again: channel
    numbers a further action acquires a second time (zeros). projection: as a CQ3000 keeping only
    its maximum projections, `Projection/W...Z000C{ch}.tif` records with ZImageProcessing="Maximum".
    errors: wells with an autofocus-error (ERR) record and no image. plate: the plate's name, as the
    images' file names, the .mrf and the .wpi give it.
    """
    numbers = (*channel_numbers, *range(max(channel_numbers) + 1, max(channel_numbers) + 1 + len(extra)))
    labels = dict(zip(numbers, (*targets, *extra)))
    actions = [*numbers, *again]  # action i + 1 acquires channel actions[i]
    folder.mkdir(parents=True, exist_ok=True)
    lines, shape, counts = [], (0, 0), (1, 1, 1)
    for (well, site), arrays in sorted(images.items()):
        letters, column = parse_well(well)
        row = row_number(letters)
        stacks = {n: as_stack(np.asarray(a)) for n, a in zip(numbers, arrays)}
        first = next(iter(stacks.values()))
        shape, counts = first.shape[2:], (first.shape[0], max(s for _, s in images), first.shape[1])
        for t in range(first.shape[0]):
            for action, ch in enumerate(actions, start=1):
                stack = stacks.get(ch) if action <= len(numbers) else None
                stack = np.zeros_like(first) if stack is None else stack
                if projection:
                    file = f"Projection/W{(row - 1) * 12 + column:04d}F{site:04d}T{t + 1:04d}Z000C{ch}.tif"
                    (folder / "Projection").mkdir(exist_ok=True)
                    tifffile.imwrite(folder / file, stack[t].max(axis=0))
                    lines.append(record(row, column, t + 1, site, 1, action, ch, file, True))
                    continue
                for z in range(first.shape[1]):
                    file = f"{plate}_{well}_T{t + 1:04d}F{site:03d}L01A{action:02d}Z{z + 1:02d}C{ch:02d}.tif"
                    tifffile.imwrite(folder / file, stack[t, z])
                    lines.append(record(row, column, t + 1, site, z + 1, action, ch, file, False))
    for well in errors:
        letters, column = parse_well(well)
        lines.append(
            '<bts:MeasurementRecord bts:Type="ERR" bts:Time="2020-01-01T11:00:00.000+01:00" '
            f'bts:Column="{column}" bts:Row="{row_number(letters)}" bts:TimePoint="1" bts:PartialTileIndex="1" '
            f'bts:TimelineIndex="1" bts:X="-20.0" bts:Y="25.0">AF Error at {letters}{column:02d} No. 0 '
            "(SAMPLE_PLATE_000000_000000)</bts:MeasurementRecord>\n"
        )
    header = '<?xml version="1.0" encoding="utf-8"?>\n'
    (folder / "MeasurementData.mlf").write_text(
        f'{header}<bts:MeasurementData bts:Version="1.0" {BTS}>\n{"".join(lines)}</bts:MeasurementData>\n',
        encoding="utf-8",
    )
    mes, timepoints, fields, planes = "AssayProtocol.mes", *counts
    channels = "".join(
        f'  <bts:MeasurementChannel bts:Ch="{ch}" bts:HorizontalPixelDimension="0.325" '
        'bts:VerticalPixelDimension="0.325" bts:CameraNumber="3" bts:InputBitDepth="16" bts:InputLevel="10000" '
        f'bts:HorizontalPixels="{shape[1]}" bts:VerticalPixels="{shape[0]}" bts:FilterWheelPosition="6" '
        f'bts:FilterPosition="{ch}" bts:ShadingCorrectionSource="" bts:ObjectiveMagnificationRatio="1" '
        f'bts:OriginalHorizontalPixels="{shape[1]}" bts:OriginalVerticalPixels="{shape[0]}" />\n'
        for ch in numbers
    )
    (folder / "MeasurementDetail.mrf").write_text(
        f'{header}<bts:MeasurementDetail bts:Version="1.0" bts:OperatorName="screening" '
        f'bts:Title={quoteattr(folder.name)} bts:Application="" bts:BeginTime="2023-09-18T13:58:39.4014935+02:00" '
        f'bts:EndTime="2023-09-18T13:59:15.9664907+02:00" bts:MeasurementSettingFileName="{mes}" '
        f'bts:ColumnCount="12" bts:RowCount="8" bts:TimePointCount="{timepoints}" bts:FieldCount="{fields}" '
        f'bts:ZCount="{planes}" bts:TargetSystem="CV8000" bts:ReleaseNumber="R2.06.03" bts:Status="0" {BTS}>\n'
        f"  <bts:MeasurementSamplePlate bts:Name={quoteattr(plate)} bts:WellPlateFileName={quoteattr(plate + '.wpi')} "
        'bts:WellPlateProductFileName="1009680001_Cellvis_#P96-1.5H-N.wpp" />\n'
        f"{channels}</bts:MeasurementDetail>\n",
        encoding="utf-8-sig",
    )
    wells = "".join(
        f'        <bts:TargetWell bts:Column="{parse_well(w)[1]}" bts:Row="{row_number(parse_well(w)[0])}">true'
        "</bts:TargetWell>\n"
        for w in sorted({w for w, _ in images})
    )
    acquire = "".join(
        '        <bts:ActionAcquire3D bts:XOffset="0" bts:YOffset="0" bts:AFShiftBase="5" bts:TopDistance="5" '
        'bts:BottomDistance="-5" bts:SliceLength="3" bts:UseSoftFocus="false"'
        + (' bts:ImageProcessing="Maximum"' if projection else "")
        + f">\n          <bts:Ch>{ch}</bts:Ch>\n        </bts:ActionAcquire3D>\n"
        for ch in actions
    )
    settings = "".join(
        f'    <bts:Channel bts:Ch="{ch}" bts:Target={quoteattr(label)} bts:ObjectiveID="20200" bts:Objective="20x v2" '
        'bts:Magnification="20" bts:MethodID="1" bts:Method="Confocal Fluorescence 405/488/561/640 nm" '
        f'bts:FilterID="{ch}" bts:Acquisition="{FILTERS.get(label, "BP525/50")}" bts:ExposureTime="100" '
        'bts:Binning="1" bts:Color="#FF002FFF" bts:MinLevel="0" bts:MaxLevel="1" bts:CSUID="2" '
        'bts:PinholeDiameter="50" bts:Kind="ConfocalFluorescence" bts:CameraType="DCAM" bts:InputLevel="10000" '
        'bts:Fluorophore="">\n'
        f"      <bts:LightSourceName>{label}nm</bts:LightSourceName>\n    </bts:Channel>\n"
        for ch, label in labels.items()
    )
    (folder / mes).write_text(
        f'{header}<bts:MeasurementSetting bts:Version="1.0" bts:ProductID="1009680001" bts:Application="" '
        f'bts:Columns="12" bts:Rows="8" {BTS}>\n  <bts:Timelapse>\n'
        '    <bts:Timeline bts:Name="Time Line 1" bts:InitialTime="0" bts:Period="4618" bts:Interval="0" '
        'bts:ExpectedTime="103" bts:Color="#ff44ee66" bts:OverrideExpectedTime="false">\n'
        f'      <bts:WellSequence bts:IsSelected="true">\n{wells}      </bts:WellSequence>\n'
        '      <bts:PointSequence bts:Method="FixedPosition">\n'
        '        <bts:FixedPosition bts:IsProportional="false">\n'
        '          <bts:Point bts:X="-567.17999999999984" bts:Y="402.9600000000022" />\n'
        "        </bts:FixedPosition>\n      </bts:PointSequence>\n"
        f'      <bts:ActionList bts:RunMode="sequential" bts:AFSearch="afparam">\n{acquire}      </bts:ActionList>\n'
        "    </bts:Timeline>\n  </bts:Timelapse>\n"
        '  <bts:LightSourceList bts:UseCalibratedLaserPower="true">\n'
        + "".join(
            f'    <bts:LightSource bts:Name="{label}nm" bts:Type="Laser" bts:WaveLength="{label}" bts:Power="100" />\n'
            for label in dict.fromkeys(labels.values())
        )
        + "  </bts:LightSourceList>\n"
        f"  <bts:ChannelList>\n{settings}  </bts:ChannelList>\n</bts:MeasurementSetting>\n",
        encoding="utf-8",
    )
    (folder / f"{plate}.wpi").write_text(
        f'{header}<bts:WellPlate bts:Version="1.0" bts:Name={quoteattr(plate)} bts:ProductID="1009680001" '
        f'bts:Usage="SamplePlate" bts:DensityUnit="uM" bts:Columns="12" bts:Rows="8" {BTS}>\n'
        "  <bts:Description>Default Plate Information</bts:Description>\n</bts:WellPlate>\n",
        encoding="utf-8-sig",
    )
    return folder
