"""Synthetic BBBC021-like screening plates: MCF-7 cells in three stains, under the real layout.

The real images (40 GB) cannot be fetched on these machines, so training, the demo and the
tests use plates drawn here. They follow the published set in everything the appliance reads:
the folder layout, file names, 16-bit TIFFs and the two CSVs (see `dataset`).

The 13 phenotypes are drawn as cells a biologist would recognise and differ from one another in
several ways at once, coarse ones included (cell density, nucleus size, stain intensity and its
spatial distribution), so that a small CNN trained briefly on one set of weeks classifies
plates of another week. Each plate is one week, with its own stain gains and illumination.

phenotypes: what each mechanism of action looks like, and a week's batch effects;
rendering: drawing one field from a phenotype (numpy only), its cells drawn by cells;
dataset: writing plates, file names and CSVs in the BBBC021 layout.
"""

from appliance.synth.dataset import moa_table, plate_name, treatments_by_class, write_dataset
from appliance.synth.phenotypes import PHENOTYPES, Phenotype, compound_strength, phenotype, week_effects
from appliance.synth.rendering import FULL_SIZE, render_field

__all__ = [
    "FULL_SIZE",
    "PHENOTYPES",
    "Phenotype",
    "compound_strength",
    "moa_table",
    "phenotype",
    "plate_name",
    "render_field",
    "treatments_by_class",
    "week_effects",
    "write_dataset",
]
