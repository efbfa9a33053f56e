"""The viewer offscreen: scrolling a 500-image 512x512 CT series in one viewport (images per second, memory),
and four 3000x3000 radiographs in 2x2 with synchronised window/level (time to re-render all four)."""

from __future__ import annotations

import os
import time

import common
from common import median_of, result

CT_IMAGES, CT_SIZE = 500, 512
VIEWPORT = 768  # one viewport: the CT is drawn at 1.5x
GRID = (1600, 1200)  # the 2x2 grid: four viewports of about 800x600
CHANGES = 50
_VERSION = "v1"


def ct_series() -> common.Path:
    """A cached folder of 500 single-frame 512x512 CT images (16-bit, a moving phantom, slice positions)."""
    folder = common.DATA / f"viewer-ct-{_VERSION}-{CT_IMAGES}x{CT_SIZE}"
    if (folder / "done").exists():
        return folder
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    t = np.linspace(-1, 1, CT_SIZE, dtype=np.float32)
    y, x = t[:, None], t[None, :]
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for n in range(CT_IMAGES):
        z = n / CT_IMAGES
        body = (np.hypot(x / 0.8, y / 0.6) < 1.0) * 1040.0
        bone = (np.hypot((x - 0.3 * np.sin(6 * z)) / 0.12, y / 0.12) < 1.0) * 900.0
        arr = (body + bone + rng.normal(0, 12, body.shape)).astype(np.int16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID, ds.Modality, ds.InstanceNumber = "Bench^Scroll", "BENCH2", "CT", n + 1
        ds.ImagePositionPatient = [-128.0, -128.0, -0.5 * n]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.5, 0.5]
        ds.Rows = ds.Columns = CT_SIZE
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = arr.tobytes()
        ds.save_as(folder / f"CT{n + 1:04d}.dcm", enforce_file_format=True)
    (folder / "done").write_text("1\n")
    return folder


def radiographs(count: int = 4) -> list:
    """`count` copies of the 3000x3000 DX, each its own instance (so nothing is shared between viewports)."""
    import pydicom
    from pydicom.uid import generate_uid

    source = common.radiograph("explicit")
    out = []
    for n in range(count):
        path = common.DATA / f"{source.stem}-copy{n + 1}.dcm"
        if not path.exists():
            ds = pydicom.dcmread(source)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.SeriesInstanceUID = generate_uid()
            ds.SeriesNumber = n + 1
            tmp = path.with_name(path.name + ".part")
            ds.save_as(tmp, enforce_file_format=True)
            tmp.replace(path)
        out.append(path)
    return out


def resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as fp:
            return int(fp.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):  # not Linux: the peak is the best there is
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024


def _app():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


def scrolling() -> list[dict]:
    from app.dicom import series as series_module
    from app.dicom.series import open_paths
    from app.ui.viewer.viewport import Viewport

    app = _app()
    folder = ct_series()
    ct = open_paths([folder]).series[0]
    assert ct.frame_count == CT_IMAGES
    series_module._images.clear()
    v = Viewport()
    v.resize(VIEWPORT, VIEWPORT)
    v.show()
    app.processEvents()
    before = resident_bytes()
    v.set_series(ct)
    v.repaint()
    peak = resident_bytes()
    start = time.perf_counter()
    for _ in range(CT_IMAGES - 1):
        v.step(1)
        v.repaint()  # paint now, as a visible window would before the next wheel step
        peak = max(peak, resident_bytes())
    down = (CT_IMAGES - 1) / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(CT_IMAGES - 1):
        v.step(-1)
        v.repaint()
        peak = max(peak, resident_bytes())
    up = (CT_IMAGES - 1) / (time.perf_counter() - start)
    assert v.position == 0 and v.image is not None
    raw = CT_IMAGES * CT_SIZE * CT_SIZE * 2
    growth = (peak - before) / raw
    v.close()
    v.deleteLater()
    app.processEvents()
    where = f"{CT_IMAGES} x {CT_SIZE}x{CT_SIZE} CT in a {VIEWPORT}x{VIEWPORT} viewport"
    return [
        result(f"scroll {where}: images rendered per second, first pass (files read)", down, "images/s"),
        result(f"scroll {where}: images rendered per second, back up", up, "images/s"),
        result(f"scroll {where}: slower pass, goal >= 60/s (as ms per image)", 1000 / min(down, up), "ms",
               at_most=1000 / 60),
        result(f"scroll {where}: peak resident memory growth / raw pixel bytes ({raw / 2**20:.0f} MiB)", growth,
               "x", at_most=1.3),
    ]


def synchronised_window_level() -> list[dict]:
    from app.dicom.display import Window
    from app.dicom.series import open_paths
    from app.ui.viewer.layout import ViewerGrid

    app = _app()
    series = open_paths(radiographs()).series
    assert len(series) == 4
    grid = ViewerGrid()
    grid.resize(*GRID)
    grid.set_layout("2x2")
    grid.show()
    for v, s in zip(grid.visible, series):
        v.set_series(s)
    app.processEvents()
    grid.set_active(grid.visible[0])
    grid.set_synchronised(True)
    grid.repaint()
    app.processEvents()
    for v in grid.visible:  # settled: the smooth (averaged) region is sampled, as after a real layout
        v._settle.stop()
        v.repaint()

    def change(w: Window) -> float:
        start = time.perf_counter()
        grid.active.set_voi(w)  # the other three follow
        grid.repaint()  # one paint of every viewport, as the event loop does it
        return time.perf_counter() - start

    change(Window(1000, 2000))  # warm up
    windows = [Window(1200.0 + 30.0 * i, 1500.0 + 40.0 * i) for i in range(CHANGES)]
    times = [change(w) for w in windows]
    assert all(v.voi == windows[-1] for v in grid.visible)
    size = f"{grid.visible[0].width()}x{grid.visible[0].height()}"
    grid.close()
    grid.deleteLater()
    app.processEvents()
    return [result(f"W/L change with sync: re-render 4 x 3000x3000 DX in 2x2 (viewports {size}), median of "
                   f"{CHANGES}", median_of(times) * 1e3, "ms", at_most=16)]


def run() -> list[dict]:
    return scrolling() + synchronised_window_level()


if __name__ == "__main__":
    for entry in run():
        print(entry)
