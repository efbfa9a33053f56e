"""Generate Lightbox's bundled sample study: a canine thorax DX and a small CT.

    python resources/make_sample.py OUTDIR

Writes OUTDIR/dx/thorax_lateral.dcm and OUTDIR/ct/CT0001.dcm .. CT0024.dcm.

The output is deterministic: UIDs are derived from fixed strings, dates and
times are fixed, and noise comes from a seeded generator.  Whole images are
only touched with + - * / and sqrt (exactly rounded on every CPU), never with
sin/exp/pow, whose vectorised versions may differ between machines.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    RLELossless,
    generate_uid,
)

SEED = 20261102
STUDY_DATE = "20261102"
DX_SPACING = 0.15  # mm per pixel at the patient
CT_SLICES = 24


def uid(name: str) -> str:
    """A fixed UID for `name`."""
    return generate_uid(entropy_srcs=["lightbox-sample-v1", name])


# --- drawing helpers (x = column, y = row, pixel centres at integers) -------


def window(shape, x0, y0, x1, y1):
    """Slices and broadcastable coordinates for a box clipped to the image."""
    rows, cols = shape
    c0, c1 = max(math.floor(x0), 0), max(min(math.ceil(x1) + 1, cols), 0)
    r0, r1 = max(math.floor(y0), 0), max(min(math.ceil(y1) + 1, rows), 0)
    y, x = np.ogrid[r0:r1, c0:c1]
    return (slice(r0, r1), slice(c0, c1)), x.astype(float), y.astype(float)


def grid(shape):
    y, x = np.ogrid[0 : shape[0], 0 : shape[1]]
    return x.astype(float), y.astype(float)


def rotate(x, y, cx, cy, angle):
    """Coordinates relative to (cx, cy) in a frame turned by `angle` degrees."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return (x - cx) * c + (y - cy) * s, (y - cy) * c - (x - cx) * s


def ellipse(x, y, cx, cy, rx, ry, angle=0.0):
    """Squared normalised radius: <= 1 inside the ellipse."""
    u, v = rotate(x, y, cx, cy, angle)
    return (u / rx) ** 2 + (v / ry) ** 2


def dome(r2):
    """Thickness profile of a sphere or cylinder, 1 at the centre."""
    return np.sqrt(np.clip(1.0 - r2, 0.0, None))


def segment(x, y, p0, p1):
    """Distance to the segment p0-p1, and the position 0..1 along it."""
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    ex, ey = x - x0 - t * dx, y - y0 - t * dy
    return np.sqrt(ex * ex + ey * ey), t


def add_ellipse(img, cx, cy, rx, ry, value, angle=0.0, profile=False):
    r = max(rx, ry)
    sl, x, y = window(img.shape, cx - r, cy - r, cx + r, cy + r)
    r2 = ellipse(x, y, cx, cy, rx, ry, angle)
    img[sl] += value * (dome(r2) if profile else r2 <= 1.0)


def add_block(img, cx, cy, half_w, half_h, value, angle=0.0):
    """A rounded rectangle (superellipse), e.g. a vertebral body."""
    r = math.hypot(half_w, half_h)
    sl, x, y = window(img.shape, cx - r, cy - r, cx + r, cy + r)
    u, v = rotate(x, y, cx, cy, angle)
    u2, v2 = (u / half_w) ** 2, (v / half_h) ** 2
    img[sl] += value * (u2 * u2 + v2 * v2 <= 1.0)


def path_mask(shape, points, r0, r1):
    """Slices and mask of a tube along a polyline, radius r0 tapering to r1."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    r = max(r0, r1)
    sl, x, y = window(shape, min(xs) - r, min(ys) - r, max(xs) + r, max(ys) + r)
    mask = np.zeros(np.broadcast_shapes(x.shape, y.shape), bool)
    n = len(points) - 1
    for i in range(n):
        d, t = segment(x, y, points[i], points[i + 1])
        mask |= d <= r0 + (r1 - r0) * (i + t) / n
    return sl, mask


def add_path(img, points, r0, r1, value):
    sl, mask = path_mask(img.shape, points, r0, r1)
    img[sl] += value * mask


def add_limb(img, p0, p1, r0, r1, value):
    """A cylinder of soft tissue seen from the side (thicker in the middle)."""
    r = max(r0, r1)
    sl, x, y = window(img.shape, min(p0[0], p1[0]) - r, min(p0[1], p1[1]) - r,
                      max(p0[0], p1[0]) + r, max(p0[1], p1[1]) + r)
    d, t = segment(x, y, p0, p1)
    img[sl] += value * dome((d / (r0 + (r1 - r0) * t)) ** 2)


def blur(img, kernel=(1, 6, 15, 20, 15, 6, 1)):
    """Separable binomial blur (about a Gaussian with sigma 1.2 px)."""
    k = np.asarray(kernel, float) / sum(kernel)
    h = len(k) // 2
    for axis in (0, 1):
        pad = [(h, h) if a == axis else (0, 0) for a in (0, 1)]
        src = np.pad(img, pad, mode="edge")
        out = np.zeros_like(img)
        n = img.shape[axis]
        for i, w in enumerate(k):
            out += w * (src[i : i + n] if axis == 0 else src[:, i : i + n])
        img = out
    return img


# --- DX: stylised lateral thorax, cranial to the left, dorsal at the top ----

DX_ROWS, DX_COLS = 1400, 1800
AIR = 90.0


def dorsal_edge(x):
    return 200 + 0.00009 * (x - 1000) ** 2


def ventral_edge(x):
    return 1250 - 0.0002 * (x - 750) ** 2


def spine_line(x):
    return dorsal_edge(x) + 215


def sternum_line(x):
    return 1150 - 0.00012 * (x - 800) ** 2


HEART = dict(cx=830, cy=860, rx=280, ry=178, angle=58)
TRACHEA = [(-20, 700), (300, 665), (560, 615), (790, 580), (880, 615)]
AORTA = [(720, 610), (760, 520), (880, 485), (1200, 490), (1520, 510)]
CAVA = [(1040, 830), (1240, 790)]


def vertebrae():
    """(kind, index, centre x, length) for C5-C7, T1-T13 and L1-L3."""
    x = 4.0
    for kind, length, count, gap in (("C", 118, 3, 14), ("T", 68, 13, 12),
                                     ("L", 104, 3, 14)):
        for i in range(count):
            yield kind, i, x + length / 2, length
            x += length + gap


def body_thickness(x, y):
    """Relative lateral thickness of the trunk (an elliptic cross-section)."""
    top, bottom = dorsal_edge(x), ventral_edge(x)
    s = (2 * y - top - bottom) / (bottom - top)
    return dome(s * s)


def lung_fraction(x, y):
    """1 where the beam crosses both lungs, less over heart and mediastinum."""
    t = np.clip((y - 440) / 760, 0.0, 1.0)
    diaphragm = 1490 - 280 * t - 560 * t * (1 - t)  # dome bulges cranially
    inlet = 430 + 0.12 * (y - 440)
    lung = ((x > inlet) & (x < diaphragm) & (y > spine_line(x) + 55)
            & (y < sternum_line(x) - 30))
    lung &= ellipse(x, y, 950, 820, 800, 520) <= 1.0  # round the corners
    frac = lung.astype(float)
    frac[ellipse(x, y, **HEART) <= 1.0] *= 0.2
    for points, r in ((TRACHEA, 60), (AORTA, 30), (CAVA, 22)):
        sl, mask = path_mask(frac.shape, points, r, r)
        frac[sl][np.broadcast_to(mask, frac[sl].shape)] = 0.0
    return frac


def draw_soft_tissue(img):
    x, y = grid(img.shape)
    thick = body_thickness(x, y)
    img += 1650 * thick - 1050 * thick * lung_fraction(x, y)
    sl, mask = path_mask(img.shape, TRACHEA, 26, 22)
    img[sl] -= 520 * thick[sl] * mask
    add_ellipse(img, 1560, 600, 95, 65, -700, profile=True)  # gastric gas
    add_ellipse(img, 1700, 820, 50, 30, -350, profile=True)  # bowel gas
    add_ellipse(img, 1640, 950, 40, 28, -300, profile=True)


def draw_vessels(img, rng):
    """Pulmonary vessels fanning out from the hilum, with one branch each."""
    hilum = (800, 620)
    angles = list(rng.uniform(160, 215, 6)) + list(rng.uniform(-40, 25, 8))
    for a in angles:
        length = rng.uniform(260, 460)
        c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
        mid = (hilum[0] + 0.45 * length * c, hilum[1] + 0.45 * length * s)
        end = (hilum[0] + length * c, hilum[1] + length * s)
        add_path(img, [hilum, mid, end], 9, 3, 170)
        b = math.radians(a + rng.choice([-28.0, 28.0]))
        tip = (mid[0] + 0.4 * length * math.cos(b), mid[1] + 0.4 * length * math.sin(b))
        add_path(img, [mid, tip], 6, 2, 150)


def draw_spine(img):
    for kind, i, cx, length in vertebrae():
        cy = spine_line(cx)
        angle = math.degrees(math.atan(0.00018 * (cx - 1000)))
        half_h = {"C": 34, "T": 38, "L": 40}[kind]
        add_block(img, cx, cy, length / 2, half_h, 1250, angle)  # cortex
        add_block(img, cx, cy, length / 2 - 9, half_h - 9, -420, angle)
        arch_y = cy - half_h - 40
        add_path(img, [(cx - 0.38 * length, arch_y), (cx + 0.38 * length, arch_y)],
                 13, 13, 650)
        if kind == "T":
            height, lean = 100 - 3.5 * i, 30 - 3 * i
        else:
            height, lean = (25, 0) if kind == "C" else (55, -20)
        top = (cx + lean, arch_y - height)
        add_path(img, [(cx, arch_y - 10), top], 10, 7, 650)


def draw_ribs(img):
    thoracic = [(cx, length) for kind, _, cx, length in vertebrae() if kind == "T"]
    for k, (cx, length) in enumerate(thoracic):
        x0 = cx + 0.35 * length
        y0 = spine_line(x0) + 20
        sternal = k < 9
        reach = 210 + 12 * k
        y1 = sternum_line(x0 + 0.5 * reach) - 5 if sternal else 1000 - 55 * (k - 9)
        # the two sides, slightly offset and magnified differently
        for dx, dy, scale, value in ((0, 0, 1.0, 420), (16, 10, 1.06, 380)):
            rib = (x0 + dx, y0 + dy, y1 + dy, reach * scale)
            draw_rib(img, rib, 0.0, 0.74 if sternal else 1.0, 11, value)
            if sternal:
                draw_rib(img, rib, 0.74, 1.0, 9, 130)  # costal cartilage


def draw_rib(img, rib, t0, t1, radius, value):
    """Part t0..t1 of a rib running caudoventrally, hooking cranially at the end."""
    x0, y0, y1, reach = rib
    sl, x, y = window(img.shape, x0 - 40, y0 + t0 * (y1 - y0),
                      x0 + 0.6 * reach + 40, y0 + t1 * (y1 - y0))
    t = (y - y0) / (y1 - y0)
    centre = x0 + reach * (1.6 * t - 1.1 * t * t)
    slope = reach * (1.6 - 2.2 * t) / (y1 - y0)
    half = radius * np.sqrt(1 + slope * slope)
    img[sl] += value * ((np.abs(x - centre) <= half) & (t >= t0) & (t <= t1))


def draw_sternum(img):
    for k in range(8):
        cx = 476 + 94 * k
        add_block(img, cx, sternum_line(cx), 36, 22, 950)
        add_block(img, cx, sternum_line(cx), 28, 15, -300)
    add_path(img, [(1204, sternum_line(1204)), (1320, sternum_line(1204) + 15)],
             10, 7, 250)  # xiphoid cartilage


def draw_forelimbs(img):
    for dx, dy, w in ((0, 0, 1.0), (45, 25, 0.85)):
        add_limb(img, (470 + dx, 900 + dy), (140 + dx, 1460 + dy), 150, 120, 700 * w)
        head = (525 + dx, 785 + dy)
        add_ellipse(img, *head, 48, 48, 950 * w)
        shaft = [(505 + dx, 835 + dy), (270 + dx, 1330 + dy)]
        add_path(img, shaft, 30, 25, 1000 * w)
        add_path(img, shaft, 18, 14, -350 * w)  # medullary cavity
    add_ellipse(img, 600, 560, 75, 230, 300, angle=-18)  # scapula
    add_path(img, [(540, 760), (660, 345)], 8, 8, 260)  # scapular spine


def draw_markers(img):
    # 25 mm calibration sphere, then a lead "L" marker in a plastic holder
    r = 25.0 / DX_SPACING / 2
    add_ellipse(img, 1645, 1245, r, r, 3300)
    add_ellipse(img, 1645, 1245, r, r, 560, profile=True)
    img[40:229, 70:216] += 140
    img[60:206, 95:129] = 4000
    img[172:206, 95:191] = 4000


def dx_pixels() -> np.ndarray:
    rng = np.random.default_rng(SEED)
    img = np.full((DX_ROWS, DX_COLS), AIR)
    draw_soft_tissue(img)
    draw_vessels(img, rng)
    draw_spine(img)
    draw_ribs(img)
    draw_sternum(img)
    draw_forelimbs(img)
    draw_markers(img)
    img = blur(img)
    # mild quantum-like noise: integer, triangular, a bit more in the body
    noise = rng.integers(-4, 5, img.shape) + rng.integers(-4, 5, img.shape)
    img += noise * np.where(img > AIR + 40, 1.5, 0.5)
    return np.rint(np.clip(img, 0, 4095)).astype(np.uint16)


# --- CT: 24 axial slices, ventral at the top of the image -------------------

CT_SIZE = 256
CT_SPACING = 0.7


def ct_slice(i: int) -> np.ndarray:
    """Hounsfield units of slice i (0 = most cranial)."""
    u = i / (CT_SLICES - 1)
    x, y = grid((CT_SIZE, CT_SIZE))
    hu = np.full((CT_SIZE, CT_SIZE), -1000.0)
    f = 0.8 + 0.2 * math.sin(math.pi * min(1.0, 1.3 * u))  # chest widens

    def paint(mask, value):
        hu[np.broadcast_to(mask, hu.shape)] = value

    paint(ellipse(x, y, 128, 130, 94, 110) <= 1, -100)  # subcutaneous fat
    paint(ellipse(x, y, 128, 130, 88, 104) <= 1, 40)  # muscle
    cavity = ellipse(x, y, 128, 116, 70 * f, 76 * f)
    paint(cavity <= 1, -800)
    draw_ct_ribs(paint, x, y, i, f)
    paint((cavity <= 1) & (np.abs(x - 128) < 10) & (y > 40), 40)  # mediastinum
    if u > 0.7:  # liver rising into the diaphragmatic dome
        r = 75 * (u - 0.7) / 0.3
        paint(ellipse(x, y, 128, 112, r, 0.9 * r) <= 1, 60)
    if 0.2 < u < 0.75:
        h = math.sin(math.pi * (u - 0.2) / 0.55)
        paint(ellipse(x, y, 138, 96, 42 * h + 4, 36 * h + 4) <= 1, -100)  # fat
        paint(ellipse(x, y, 138, 96, 42 * h + 1, 36 * h + 1) <= 1, 45)  # heart
    paint(ellipse(x, y, 142, 176, 8, 8) <= 1, 45)  # aorta
    if u < 0.35:
        paint(ellipse(x, y, 128, 150, 9, 9) <= 1, -1000)  # trachea
    elif u < 0.5:
        for bx in (117, 139):
            paint(ellipse(x, y, bx, 153, 5, 5) <= 1, -1000)  # main bronchi
    draw_ct_spine(paint, x, y, i)
    return blur(hu, (1, 2, 1))


def draw_ct_ribs(paint, x, y, i, f):
    """Rib segments in the chest wall; they drift round as the slices move."""
    inner = ellipse(x, y, 128, 116, 70 * f + 2, 76 * f + 2)
    outer = ellipse(x, y, 128, 116, 70 * f + 9, 76 * f + 9)
    wall = (inner > 1) & (outer <= 1) & (np.abs(x - 128) > 14)
    dx, dy = x - 128, y - 116
    r = np.sqrt(dx * dx + dy * dy) + 1e-9
    for k in range(10):
        a = math.radians(18 + 36 * k + 7 * i)
        ca, sa = math.cos(a), math.sin(a)
        paint(wall & ((dx * ca + dy * sa) / r >= math.cos(math.radians(12))), 700)
    if i % 4:
        paint(ellipse(x, y, 128, 33, 8, 6) <= 1, 700)  # sternebra


def draw_ct_spine(paint, x, y, i):
    disc = i % 8 == 3
    paint(ellipse(x, y, 128, 198, 15, 15) <= 1, 80 if disc else 700)
    paint(ellipse(x, y, 128, 219, 11, 11) <= 1, 700)  # vertebral arch
    paint(ellipse(x, y, 128, 219, 6, 6) <= 1, 20)  # spinal canal
    d, _ = segment(x, y, (128, 228), (128, 233))
    paint(d <= 4, 700)  # spinous process


def ct_pixels(i: int) -> np.ndarray:
    """Stored values (HU + 1024) of slice i."""
    return (np.rint(ct_slice(i)) + 1024).astype(np.int16)


# --- DICOM datasets ----------------------------------------------------------


def code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def base_dataset(sop_class: str, instance: str, series: str) -> Dataset:
    """Patient, study, series and equipment attributes shared by all files."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid(instance)
    ds.InstanceCreationDate = STUDY_DATE
    ds.InstanceCreationTime = "104500"
    # patient: a spayed golden retriever and her owner
    ds.PatientName = "Hendricks^Bailey"
    ds.PatientID = "VET-000123"
    ds.PatientBirthDate = "20190315"
    ds.PatientSex = "F"
    ds.PatientSexNeutered = "ALTERED"
    ds.PatientSpeciesDescription = "Canine"
    ds.PatientSpeciesCodeSequence = Sequence(
        [code("448771007", "SCT", "Canis lupus familiaris")])
    ds.PatientBreedDescription = "Golden Retriever"
    ds.PatientBreedCodeSequence = Sequence(
        [code("58108001", "SCT", "Golden retriever dog breed")])
    ds.BreedRegistrationSequence = Sequence()
    ds.ResponsiblePerson = "Hendricks^Anna"
    ds.ResponsiblePersonRole = "OWNER"
    # study
    ds.StudyInstanceUID = uid("study")
    ds.StudyDate = STUDY_DATE
    ds.StudyTime = "101500"
    ds.StudyID = "42"
    ds.AccessionNumber = "A2026-0042"
    ds.StudyDescription = "Thorax"
    ds.ReferringPhysicianName = "Marsh^Olivia"
    # series and equipment
    ds.SeriesInstanceUID = uid(series)
    ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = STUDY_DATE
    ds.BodyPartExamined = "CHEST"
    ds.Manufacturer = "Lightbox sample generator"
    ds.ManufacturerModelName = "make_sample.py"
    ds.SoftwareVersions = "0.1"
    ds.InstitutionName = "Riverside Veterinary Clinic"
    ds.StationName = "SAMPLE"
    return ds


def set_image_pixel(ds: Dataset, rows: int, cols: int, stored: int, signed: bool):
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = stored
    ds.HighBit = stored - 1
    ds.PixelRepresentation = int(signed)


def dx_dataset() -> Dataset:
    ds = base_dataset(DigitalXRayImageStorageForPresentation, "dx/1", "series/dx")
    ds.Modality = "DX"
    ds.SeriesNumber = 1
    ds.SeriesDescription = "Thorax lateral"
    ds.SeriesTime = "101800"
    ds.ContentTime = ds.AcquisitionTime = "101812"
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ViewPosition = "LL"
    ds.PatientOrientation = ["F", "A"]  # head left, spine at the top
    ds.KVP = "70"
    ds.ExposureTime = 10
    ds.XRayTubeCurrent = 250
    ds.DetectorType = "SCINTILLATOR"
    ds.DistanceSourceToDetector = "1000"
    ds.DistanceSourceToPatient = "937.5"
    ds.ImagerPixelSpacing = ["0.16", "0.16"]
    ds.EstimatedRadiographicMagnificationFactor = "1.0667"
    ds.PixelSpacing = [str(DX_SPACING), str(DX_SPACING)]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    set_image_pixel(ds, DX_ROWS, DX_COLS, 12, signed=False)
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    ds.WindowCenter = ["1500", "2500"]
    ds.WindowWidth = ["2600", "1800"]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "BONE"]
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    return ds


def ct_dataset(i: int) -> Dataset:
    ds = base_dataset(CTImageStorage, f"ct/{i + 1}", "series/ct")
    ds.Modality = "CT"
    ds.SeriesNumber = 2
    ds.SeriesDescription = "Thorax CT"
    ds.SeriesTime = "103000"
    ds.ContentTime = ds.AcquisitionTime = "103015"
    ds.InstanceNumber = i + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = uid("frame/ct")
    ds.PositionReferenceIndicator = ""
    ds.KVP = "120"
    ds.SliceThickness = "2.5"
    z = 28.75 - 2.5 * i  # cranial first
    corner = -(CT_SIZE - 1) * CT_SPACING / 2
    ds.ImagePositionPatient = [str(corner), str(corner), str(z)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SliceLocation = str(z)
    ds.PixelSpacing = [str(CT_SPACING), str(CT_SPACING)]
    set_image_pixel(ds, CT_SIZE, CT_SIZE, 16, signed=True)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["400", "1500"]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
    ds.LossyImageCompression = "00"
    return ds


def save(ds: Dataset, pixels: np.ndarray, path: Path) -> None:
    """RLE-compress, check the round trip, and write a Part 10 file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = uid("implementation")
    meta.ImplementationVersionName = "LIGHTBOX_0.1"
    ds.file_meta = meta
    ds.compress(RLELossless, pixels, encoding_plugin="pylibjpeg",
                generate_instance_uid=False)
    if not np.array_equal(ds.pixel_array, pixels):
        raise RuntimeError(f"RLE round trip changed the pixels of {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: make_sample.py OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[1])
    save(dx_dataset(), dx_pixels(), out / "dx" / "thorax_lateral.dcm")
    for i in range(CT_SLICES):
        save(ct_dataset(i), ct_pixels(i), out / "ct" / f"CT{i + 1:04d}.dcm")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
