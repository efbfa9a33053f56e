"""Calibrated geometry on image coordinates. No Qt here.

calibration: how big a pixel is, and on what authority (the file, or a manual calibration);
geometry: lengths, angles, areas and masks on anisotropic pixels; tools: the Measurement model and
`measure` (values, display lines, reference ranges); drawing: measurements burnt into exported
pictures; export: a study's measurements as CSV or JSON.
"""
