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


def box_blur(img, radius, passes=2):
    """Wide, cheap blur: repeated running means via cumulative sums."""
    n = 2 * radius + 1
    for axis in (0, 1):
        for _ in range(passes):
            pad = [(radius + 1, radius) if a == axis else (0, 0) for a in (0, 1)]
            c = np.cumsum(np.pad(img, pad, mode="edge"), axis=axis)
            m = img.shape[axis]
            if axis == 0:
                img = (c[n : n + m] - c[:m]) / n
            else:
                img = (c[:, n : n + m] - c[:, :m]) / n
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


HEART = dict(cx=840, cy=850, rx=285, ry=185, angle=58)
TRACHEA = [(-20, 700), (300, 665), (560, 615), (800, 585)]
AORTA = [(730, 600), (770, 520), (880, 488), (1200, 495), (1560, 515)]
CAVA = [(1050, 830), (1260, 800)]


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


def lung_depth(x, y):
    """Relative amount of lung along the beam: an ellipsoidal chest cavity cut
    by the diaphragm, with less lung over the heart and great vessels."""
    lung = np.sqrt(dome(ellipse(x, y, 920, 795, 560, 340)))
    lung = lung * ((x - 1800) ** 2 + (y - 1150) ** 2 > 620**2)  # diaphragm
    heart = ellipse(x, y, **HEART)
    lung = lung * np.where(heart <= 1, 0.45 - 0.35 * dome(heart), 1.0)
    for points, r0, r1 in ((AORTA, 28, 28), (CAVA, 22, 15)):
        sl, mask = path_mask(lung.shape, points, r0, r1)
        lung[sl] *= np.where(mask, 0.5, 1.0)
    return lung


def draw_soft_tissue(img, rng):
    x, y = grid(img.shape)
    thick = body_thickness(x, y)
    lung = lung_depth(x, y)
    img += 1650 * thick - 1150 * thick * lung
    draw_vessels(img, lung, rng)
    sl, mask = path_mask(img.shape, TRACHEA, 24, 20)
    img[sl] -= 380 * thick[sl] * mask
    add_ellipse(img, 1560, 600, 95, 65, -600, profile=True)  # gastric gas
    add_ellipse(img, 1700, 820, 50, 30, -300, profile=True)  # bowel gas
    add_ellipse(img, 1640, 950, 40, 28, -260, profile=True)


def draw_vessels(img, lung, rng):
    """Faint pulmonary vessels fanning out from the hilum, seen only in lung."""
    hilum = (810, 640)
    angles = list(rng.uniform(165, 215, 5)) + list(rng.uniform(-40, 15, 7))
    vessels = np.zeros_like(img)
    for a in angles:
        length = rng.uniform(300, 480)
        c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
        mid = (hilum[0] + 0.45 * length * c, hilum[1] + 0.45 * length * s)
        end = (hilum[0] + length * c, hilum[1] + length * s)
        b = math.radians(a + rng.choice([-25.0, 25.0]))
        tip = (mid[0] + 0.4 * length * math.cos(b), mid[1] + 0.4 * length * math.sin(b))
        for points, r0, r1 in (([hilum, mid, end], 9, 2), ([mid, tip], 5, 2)):
            sl, mask = path_mask(img.shape, points, r0, r1)
            vessels[sl] = np.maximum(vessels[sl], mask)
    img += 90 * vessels * np.minimum(lung * 2, 1.0)


def draw_spine(img):
    for kind, i, cx, length in vertebrae():
        cy = spine_line(cx)
        angle = math.degrees(math.atan(0.00018 * (cx - 1000)))
        half_h = {"C": 34, "T": 38, "L": 40}[kind]
        add_block(img, cx, cy, length / 2, half_h, 950, angle)  # cortex
        add_block(img, cx, cy, length / 2 - 7, half_h - 7, -230, angle)
        arch_y = cy - half_h - 26
        add_block(img, cx + 4, arch_y, 0.42 * length, 18, 520, angle)  # arch
        if kind == "T":
            height, lean = 100 - 3.5 * i, 30 - 3 * i
        else:
            height, lean = (20, 0) if kind == "C" else (55, -20)
        add_path(img, [(cx, arch_y - 16), (cx + lean, arch_y - 16 - height)],
                 12, 8, 420)


def draw_ribs(img):
    thoracic = [(cx, length) for kind, _, cx, length in vertebrae() if kind == "T"]
    for k, (cx, length) in enumerate(thoracic):
        x0 = cx + 0.35 * length
        y0 = spine_line(x0) + 25
        sternal = k < 9
        reach = 460 + 6 * k
        y1 = sternum_line(x0 + 0.5 * reach) - 5 if sternal else 1010 - 60 * (k - 9)
        end = 0.74 if sternal else 1.0
        # near side, then the far side: offset, magnified and fainter
        for dx, dy, scale, value in ((0, 0, 1.0, 1.0), (22, 12, 1.08, 0.7)):
            rib = (x0 + dx, y0 + dy, y1 + dy, reach * scale)
            draw_rib(img, rib, 0.0, end, 9 * scale, 190 * value)
            draw_rib(img, rib, 0.0, end, 4 * scale, -70 * value)  # marrow
            if sternal:
                draw_rib(img, rib, end, 1.0, 8, 60 * value)  # costal cartilage


def draw_rib(img, rib, t0, t1, radius, value):
    """Part t0..t1 of a rib running caudoventrally, hooking cranially at the end."""
    x0, y0, y1, reach = rib
    sl, x, y = window(img.shape, x0 - 40, y0 + t0 * (y1 - y0),
                      x0 + 0.6 * reach + 40, y0 + t1 * (y1 - y0))
    t = (y - y0) / (y1 - y0)
    centre = x0 + reach * (1.6 * t - 1.1 * t * t)
    slope = reach * (1.6 - 2.2 * t) / (y1 - y0)
    half = radius * np.sqrt(1 + slope * slope)
    fade = np.clip((t1 - t) / 0.06, 0.5, 1.0) if t1 < 1 else 1.0  # rib end
    img[sl] += value * fade * ((np.abs(x - centre) <= half) & (t >= t0) & (t <= t1))


def draw_sternum(img):
    for k in range(8):
        cx = 476 + 94 * k
        add_block(img, cx, sternum_line(cx), 36, 22, 850)
        add_block(img, cx, sternum_line(cx), 29, 15, -250)
    y = sternum_line(1204)
    add_path(img, [(1204, y), (1320, y + 15)], 10, 7, 200)  # xiphoid cartilage


def draw_forelimbs(soft, img):
    for dx, dy, w in ((0, 0, 1.0), (70, 30, 0.7)):
        add_limb(soft, (470 + dx, 900 + dy), (200 + dx, 1460 + dy), 150, 120, 450 * w)
        add_ellipse(img, 520 + dx, 790 + dy, 52, 48, 650 * w)  # humeral head
        shaft = [(500 + dx, 840 + dy), (340 + dx, 1250 + dy)]
        add_path(img, shaft, 34, 28, 650 * w)
        add_path(img, shaft, 20, 16, -220 * w)  # medullary cavity
        forearm = [(335 + dx, 1265 + dy), (380 + dx, 1460 + dy)]
        add_path(img, forearm, 24, 20, 600 * w)  # radius and ulna
    add_ellipse(img, 600, 560, 75, 230, 220, angle=-18)  # scapula
    add_path(img, [(540, 760), (660, 345)], 8, 8, 200)  # scapular spine


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
    soft = np.full((DX_ROWS, DX_COLS), AIR)
    draw_soft_tissue(soft, rng)
    bone = np.zeros_like(soft)
    draw_spine(bone)
    draw_ribs(bone)
    draw_sternum(bone)
    draw_forelimbs(soft, bone)
    draw_markers(bone)
    img = box_blur(soft, 3) + blur(bone)  # soft tissue is less sharp than bone
    # mild quantum-like noise: integer and triangular, only in the patient
    noise = rng.integers(-7, 8, img.shape) + rng.integers(-7, 8, img.shape)
    img += noise * (img > AIR + 40)
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
    lung = ellipse(x, y, 128, 116, 70 * f, 76 * f) <= 1
    lung &= (np.abs(x - 128) > 4) & ((np.abs(x - 128) > 12) | (y < 120))
    paint(lung, -800)
    for cx, cy, r in ct_vessels(u):
        paint(lung & (ellipse(x, y, cx, cy, r, r) <= 1), 40)
    if u > 0.7:  # liver rising into the diaphragmatic dome
        r = 62 * (u - 0.7) / 0.3
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
    draw_ct_ribs(paint, x, y, i, f)
    draw_ct_spine(paint, x, y, i)
    return blur(hu, (1, 2, 1))


def ct_vessels(u: float):
    """(x, y, radius) of pulmonary vessels; each drifts a little with depth."""
    rng = np.random.default_rng(SEED + 1)
    for k in range(16):
        side = -38 if k % 2 else 38
        x0, y0 = 128 + side + rng.uniform(-22, 22), 116 + rng.uniform(-45, 45)
        dx, dy = rng.uniform(-15, 15, 2)
        yield x0 + dx * u, y0 + dy * u, rng.uniform(1.5, 3.0)


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
    ds.PixelIntensityRelationshipSign = -1  # bone (less beam) is bright
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    ds.WindowCenter = ["1450", "2000"]
    ds.WindowWidth = ["2000", "3000"]
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
