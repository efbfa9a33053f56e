"""The image viewer: viewports, tools, overlays."""
