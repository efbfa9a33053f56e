"""Lightbox: a desktop DICOM viewer and importer for veterinary practices."""

__version__ = "0.1.0"
