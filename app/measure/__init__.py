"""Calibrated geometry on image coordinates. No Qt here."""
