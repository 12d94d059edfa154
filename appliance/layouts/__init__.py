"""Plate layouts: each module turns one kind of plate folder into Fields and Failures
(appliance/layouts/base.py).

imagexpress: one TIFF per channel named {well}_s{site}_w{n} (BBBC021, MetaXpress/ImageXpress);
ome_tiff: one multi-channel OME-TIFF per field; manifest: a CSV listing each field's files.
"""
