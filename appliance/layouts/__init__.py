"""Plate layouts: each module turns one kind of plate folder into Fields and Failures
(appliance/layouts/base.py) and declares its `Layout`; appliance/plate.py lists them in the order
`--layout auto` tries them.

By file names: imagexpress (BBBC021, MetaXpress/ImageXpress; the .HTD names the wavelengths).
By the imager's index, through records.py: harmony (Operetta/Phenix), cellvoyager (Yokogawa),
incell (IN Cell Analyzer), metaxpress_ai (ImageXpress HCS.ai). By metadata in the data: ome_tiff,
ome_zarr (OME-NGFF HCS). By a table: manifest (ours), loaddata (CellProfiler's LoadData CSV).
bbbc021.py reads BBBC021's image and MoA tables (labelled fields for training).
"""
