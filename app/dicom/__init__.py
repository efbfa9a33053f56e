"""Reading DICOM, decoding pixels and turning them into display values. No Qt here."""
