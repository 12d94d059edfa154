"""Synthetic BBBC021-like screening plates: MCF-7 cells in three stains, under the real layout.

The real images (40 GB) cannot be fetched on these machines, so training, the demo and the
tests use plates drawn here. They follow the published set in everything the appliance reads:
the folder layout, file names, 16-bit TIFFs and the two CSVs (see `dataset`).

The 13 phenotypes are drawn as cells a biologist would recognise. A class shows in morphology,
texture and arrangement, never in brightness alone: every field has its own stain gains,
background, illumination and seeding density, over ranges wider than any class's effect on
mean intensity; each compound is its own variant of its class, weaker at low doses; and fields
go out of focus, catch debris or saturate at realistic rates. Each plate is one week, with its
own stain gains and vignetting. docs/synthetic.md describes them.

phenotypes: what each mechanism of action looks like, per compound and dose, and a week's batch effects;
nuisances: each field's own conditions and defects;
rendering: drawing one field from a phenotype (numpy only), its cells drawn by cells;
dataset: writing plates, file names and CSVs in the BBBC021 layout.
"""

from appliance.synth.dataset import (
    heldout_compounds,
    moa_table,
    plate_name,
    treatments_by_class,
    write_dataset,
    write_heldout_split,
)
from appliance.synth.phenotypes import (
    PHENOTYPES,
    Phenotype,
    brightness_cue,
    compound_strength,
    dose_strength,
    phenotype,
    week_effects,
)
from appliance.synth.rendering import FULL_SIZE, render_field

__all__ = [
    "FULL_SIZE",
    "PHENOTYPES",
    "Phenotype",
    "brightness_cue",
    "compound_strength",
    "dose_strength",
    "heldout_compounds",
    "moa_table",
    "phenotype",
    "plate_name",
    "render_field",
    "treatments_by_class",
    "week_effects",
    "write_dataset",
    "write_heldout_split",
]
