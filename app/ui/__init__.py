"""The Qt interface: the only package that imports QtWidgets and QtGui."""
