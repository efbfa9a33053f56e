"""The command line: parse, call one ground-floor function, print. No logic of its own."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from app import __version__
from app.errors import LightboxError, UsageError

log = logging.getLogger("app.cli")

COMMANDS = ("info", "render", "view", "import", "library", "export", "open", "register-scheme", "unregister-scheme",
            "pacs", "send", "outbox", "query", "retrieve", "worklist", "receive", "measurements")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # bad usage: usage line, one error line, exit 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lightbox", description="Lightbox DICOM viewer.")
    parser.add_argument("--version", action="version", version=f"Lightbox {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("info", help="summarise a DICOM file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("render", help="render a DICOM image to PNG or JPEG")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True, help="output .png, .jpg or .jpeg")
    p.add_argument("--frame", type=int, default=1, help="frame number, from 1 (default 1)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--window", metavar="CENTER,WIDTH", help="window centre and width in modality units")
    group.add_argument("--preset", metavar="NAME", help="a preset by name (see: info)")
    p.add_argument("--size", type=int, metavar="LONGEST_SIDE", help="scale so the longest side has this many pixels")
    p.add_argument("--invert", action="store_true", help="invert the displayed grey scale")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")

    p = sub.add_parser("view", help="open the viewer (also: lightbox [PATH...])")
    p.add_argument("paths", nargs="*", help="files or folders to open")

    p = sub.add_parser("import", help="import files, folders, zip archives or DICOMDIR sets into the library")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="one entry per file, and the conflicts, as JSON")
    g = p.add_argument_group("photos (JPEG, PNG)", "whose images they are; they become Secondary Capture images")
    g.add_argument("--study", metavar="STUDY_UID", help="add them to this study in the library")
    g.add_argument("--patient-name", default="", metavar="NAME", help="e.g. 'Hendricks^Bailey'")
    g.add_argument("--patient-id", default="", metavar="ID")
    g.add_argument("--species", default="")
    g.add_argument("--breed", default="")
    g.add_argument("--owner", default="", help="the responsible person")
    g.add_argument("--description", default="", help="the new study's description")
    g.add_argument("--worklist", metavar="AET", help="take patient and study from an entry of this PACS's worklist "
                   "(with --order); starts its MPPS when the configuration does MPPS")
    g.add_argument("--order", metavar="KEY", help="the worklist entry: accession number, step ID or study UID")

    p = sub.add_parser("library", help="list, remove or check what the library holds")
    lib = p.add_subparsers(dest="library_command", parser_class=_Parser, required=True)
    q = lib.add_parser("list", help="list studies, newest first")
    q.add_argument("--query", default="", metavar="TEXT",
                   help="words to find in patient name, ID, owner, species, breed, accession or description")
    q.add_argument("--json", action="store_true")
    q = lib.add_parser("remove", help="remove a study and its files")
    q.add_argument("study_uid", metavar="STUDY_UID")
    q.add_argument("--json", action="store_true")
    q = lib.add_parser("check", help="compare the index with the files and repair what a crash left")
    q.add_argument("--dry-run", action="store_true", help="report only")
    q.add_argument("--json", action="store_true")

    p = sub.add_parser("export", help="export a study: DICOM files, a DICOMDIR folder, a zip, or PNG/JPEG images")
    p.add_argument("study_uid", metavar="STUDY_UID")
    p.add_argument("--to", required=True, metavar="DIR",
                   help="the folder to export into (created if missing; nothing in it is overwritten); "
                        "for --format zip also a path ending in .zip")
    p.add_argument("--format", choices=("dicom", "dicomdir", "zip", "png", "jpeg"), default="dicom",
                   help="dicom: one folder per series (default); dicomdir: a DICOMDIR file-set; zip: that "
                        "file-set in a zip; png, jpeg: every frame rendered")
    p.add_argument("--anonymize", action="store_true",
                   help="DICOM basic de-identification: new UIDs, names, IDs and owner removed; species and "
                        "breed kept")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--window", metavar="CENTER,WIDTH", help="png/jpeg: window centre and width")
    group.add_argument("--preset", metavar="NAME", help="png/jpeg: a preset by name (e.g. Lung)")
    p.add_argument("--measurements", action="store_true", help="png/jpeg: draw the measurements and their values")
    p.add_argument("--json", action="store_true", help="what was written, as JSON")

    p = sub.add_parser("measurements", help="a study's measurements with their values, as CSV or JSON")
    p.add_argument("study_uid", metavar="STUDY_UID")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default) or json")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (replacing it) instead of the terminal")

    p = sub.add_parser("open", help="open a lightbox:// link (also: lightbox URI, as the system calls it)")
    p.add_argument("uri", metavar="URI")
    p.add_argument("--no-gui", action="store_true", help="download and import without a window; print the result")
    p.add_argument("--json", action="store_true", help="with --no-gui: what was imported, as JSON")

    for name, text in (("register-scheme", "make lightbox:// links open Lightbox (this user)"),
                       ("unregister-scheme", "stop lightbox:// links opening Lightbox (this user)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true")

    _pacs_parser(sub)

    p = sub.add_parser("query", help="find studies on a PACS")
    p.add_argument("pacs", metavar="AET", help="the PACS configuration (AE title or unique name)")
    p.add_argument("--patient-name", default="", metavar="P", help="anywhere in the name; * and ? as wildcards")
    p.add_argument("--patient-id", default="", metavar="I")
    p.add_argument("--owner", default="", help="the responsible person")
    p.add_argument("--species", default="")
    p.add_argument("--accession", default="", metavar="A")
    p.add_argument("--modality", default="", metavar="M")
    p.add_argument("--date", default="", metavar="YYYYMMDD[-YYYYMMDD]", help="study date or range (open ends allowed)")
    p.add_argument("--description", default="", help="anywhere in the study description")
    p.add_argument("--series", action="store_true", help="list each study's series too")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("retrieve", help="bring a study (or a series) from a PACS into the library")
    p.add_argument("pacs", metavar="AET", help="the PACS configuration (AE title or unique name)")
    p.add_argument("study_uid", metavar="STUDY_UID")
    p.add_argument("--series", default="", metavar="UID", help="only this series")
    p.add_argument("--method", choices=("auto", "get", "move", "wado"), default="auto",
                   help="auto: the configuration's (default)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("receive", help="receive studies sent to this computer (a storage SCP) until interrupted")
    p.add_argument("--aet", default=None, help="this computer's AE title (default: the settings', LIGHTBOX)")
    p.add_argument("--port", type=int, default=None, help="the port to listen on (default: the settings', 11112)")
    p.add_argument("--json", action="store_true", help="one JSON line per instance received")

    p = sub.add_parser("worklist", help="the Modality Worklist of a PACS")
    p.add_argument("pacs", metavar="AET", help="the PACS configuration (AE title or unique name)")
    p.add_argument("--date", default="today", metavar="YYYYMMDD[-YYYYMMDD]|today|any",
                   help="scheduled date or range (default today)")
    p.add_argument("--modality", default="", metavar="M")
    p.add_argument("--station", default="", metavar="AET", help="scheduled station AE title")
    p.add_argument("--patient-name", default="", metavar="P")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("send", help="send studies (or files) to a PACS through the outbox, and wait")
    p.add_argument("what", nargs="+", metavar="STUDY_UID|PATH", help="studies in the library, or files/folders "
                   "(imported into the library first)")
    p.add_argument("--to", required=True, metavar="AET", help="the PACS configuration (AE title or unique name)")
    p.add_argument("--wait", type=float, default=120.0, metavar="SECONDS",
                   help="how long to keep retrying an unreachable PACS before leaving the send in the outbox "
                        "(default 120)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("outbox", help="sends to PACS: list, retry, cancel, run what is due")
    box = p.add_subparsers(dest="outbox_command", parser_class=_Parser)
    q = box.add_parser("list", help="the sends, newest first (the default)")
    q.add_argument("--all", action="store_true", help="also finished and cancelled sends")
    q.add_argument("--json", action="store_true")
    for name, text in (("retry", "run a send again now (refused instances too)"), ("cancel", "stop a send")):
        q = box.add_parser(name, help=text)
        q.add_argument("send_id", type=int, metavar="ID")
        q.add_argument("--json", action="store_true")
    q = box.add_parser("run", help="run every send that is due (queued, or waiting whose time has come)")
    q.add_argument("--json", action="store_true")
    p.add_argument("--json", action="store_true")
    return parser


def _pacs_options(p, editing: bool) -> None:
    """The options of `pacs add` and `pacs edit` (for edit, only what is given changes)."""
    d = None if editing else argparse.SUPPRESS
    p.add_argument("--type", choices=("dicomweb", "dimse"), required=not editing,
                   help="chosen once: DICOMweb or classic DICOM over TCP")
    p.add_argument("--aet", required=not editing, help="the PACS's AE title (unique)" if not editing else
                   "a new AE title for the PACS")
    p.add_argument("--name", required=not editing, help="display name")
    web = p.add_argument_group("DICOMweb")
    web.add_argument("--url", help="base URL, e.g. https://pacs.example/dicom-web")
    web.add_argument("--auth", choices=("none", "basic", "bearer"))
    web.add_argument("--user")
    web.add_argument("--secret-stdin", action="store_true", default=d,
                     help="read the password or token from standard input")
    web.add_argument("--header", action="append", metavar="'NAME: VALUE'", help="an extra HTTP header (repeatable)")
    on_off = argparse.BooleanOptionalAction
    web.add_argument("--qido", action=on_off, help="import: QIDO-RS search and WADO-RS retrieve (default on)")
    web.add_argument("--stow", action=on_off, help="export: STOW-RS (default on)")
    web.add_argument("--multipart", action=on_off,
                     help="STOW-RS as multipart/related (default on; off: single application/dicom bodies)")
    web.add_argument("--source-aet", help="our AE title, sent in a header with each request")
    web.add_argument("--ca-file", help="extra CA file (PEM) for TLS")
    dimse = p.add_argument_group("classic DICOM (TCP)")
    dimse.add_argument("--host")
    dimse.add_argument("--port")
    dimse.add_argument("--calling-aet", action="append", metavar="OURS",
                       help="this computer's AE title (repeatable; the first is used for the test and queries)")
    dimse.add_argument("--test-aet", help="which of ours the connection test uses")
    dimse.add_argument("--query-aet", help="which of ours queries and retrieves use")
    dimse.add_argument("--store", action=on_off, help="export: C-STORE (default on)")
    dimse.add_argument("--query-retrieve", action=on_off, help="import: C-FIND and C-GET/C-MOVE (default on)")
    dimse.add_argument("--retrieve-method", choices=("auto", "get", "move"))
    dimse.add_argument("--move-aet", help="our storage AE title that C-MOVE sends to")
    dimse.add_argument("--move-port", help="our storage port that C-MOVE sends to")
    dimse.add_argument("--mwl", action=on_off, help="Modality Worklist (default off)")
    dimse.add_argument("--mwl-charset", metavar="ISO_IR_192", help="the worklist's character set")
    dimse.add_argument("--mpps", action=on_off, help="MPPS (default off)")
    dimse.add_argument("--tls", action=on_off, help="DICOM over TLS (default off)")
    dimse.add_argument("--client-cert")
    dimse.add_argument("--client-key")
    p.add_argument("--json", action="store_true")


def _pacs_parser(sub) -> None:
    p = sub.add_parser("pacs", help="PACS configurations: add, list, show, edit, remove, test")
    pacs = p.add_subparsers(dest="pacs_command", parser_class=_Parser, required=True)
    _pacs_options(pacs.add_parser("add", help="add a configuration"), editing=False)
    q = pacs.add_parser("edit", help="change a configuration (its type cannot change)")
    q.add_argument("key", metavar="AET")
    _pacs_options(q, editing=True)
    for name, text in (("show", "one configuration"), ("remove", "remove a configuration and its secret"),
                       ("test", "test the connection: exit 0 only when established")):
        q = pacs.add_parser(name, help=text)
        q.add_argument("key", metavar="AET")
        q.add_argument("--json", action="store_true")
    q = pacs.add_parser("list", help="the configurations")
    q.add_argument("--json", action="store_true")
    q = pacs.add_parser("transfer", help="allow or forbid sending to any PACS")
    q.add_argument("state", choices=("on", "off"))
    q = pacs.add_parser("export", help="the configurations, without secrets, to a file")
    q.add_argument("file")
    q = pacs.add_parser("import", help="configurations from an exported file")
    q.add_argument("file")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from app import log as logfile

    for stream in (sys.stdout, sys.stderr):  # a narrow console encoding must not break output
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    if "--json" in argv and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")
    argv = _negative_values(argv)

    logfile.setup()
    if argv and argv[0].lower().startswith("lightbox:"):
        argv = ["open", *argv]  # how the operating system passes a clicked link
    elif argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        argv = ["view", *argv]  # lightbox FILE... opens the viewer
    elif not argv:
        argv = ["view"]
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except LightboxError as exc:
        log.info("%s failed: %s", args.command, exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the traceback goes to the log, never to the terminal
        log.exception("unexpected failure in %s", args.command)
        print(f"error: unexpected failure ({type(exc).__name__}); details are in {logfile.log_file()}", file=sys.stderr)
        return 1


def _negative_values(argv: list[str]) -> list[str]:
    """Let '--window -600,1500' through: argparse would take '-600,1500' for an option."""
    out = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1] == "--window" and arg[:1] == "-" and arg[1:2].isdigit():
            out[-1] = f"--window={arg}"
        else:
            out.append(arg)
    return out


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


# -- info ---------------------------------------------------------------------------------------

def cmd_info(args) -> int:
    from app.dicom.reading import read
    from app.dicom.summary import format_date, summary

    info = summary(read(args.file, header_only=True))
    if args.json:
        _print_json(info)
        return 0
    p, st, se, i = info["patient"], info["study"], info["series"], info["instance"]
    patient = [p["name"] or "(no name)"]
    if p["id"]:
        patient.append(f"ID {p['id']}")
    patient += [x for x in (p["species"], p["breed"]) if x]
    if p["owner"]:
        patient.append(f"owner {p['owner']}")
    if p["sex"]:
        patient.append(f"sex {p['sex']}")
    if p["birth_date"]:
        patient.append(f"born {format_date(p['birth_date'])}")
    study = [x for x in (format_date(st["date"]), st["description"]) if x]
    if st["accession"]:
        study.append(f"accession {st['accession']}")
    series = [x for x in (se["modality"], f"#{se['number']}" if se["number"] is not None else "", se["description"]) if x]
    lines = [
        ("Patient", " · ".join(patient)),
        ("Study", " · ".join(study) or "(no description)"),
        ("", st["instance_uid"]),
        ("Series", " · ".join(series) or "(no description)"),
        ("", se["instance_uid"]),
    ]
    from pydicom.uid import UID

    if i["rows"]:
        image = [f"{i['columns']} x {i['rows']}", f"{i['frames']} frame{'s' if i['frames'] != 1 else ''}",
                 i["photometric_interpretation"] or "", f"{i['bits_stored']} bits stored" if i["bits_stored"] else ""]
        if i["pixel_spacing_mm"]:
            r, c = i["pixel_spacing_mm"]
            where = "in the patient" if i["spacing_source"] == "PixelSpacing" else "at the detector"
            image.append(f"pixel {c:g} x {r:g} mm ({where}, {i['spacing_source']})")
        else:
            image.append("no pixel spacing")
        lines.append(("Image", " · ".join(x for x in image if x)))
    lines.append(("Encoding", UID(i["transfer_syntax_uid"]).name or i["transfer_syntax_uid"]))
    lines.append(("Object", UID(i["sop_class_uid"]).name or i["sop_class_uid"]))
    lines.append(("", i["sop_instance_uid"]))
    for label, text in lines:
        print(f"{label:<9} {text}")
    return 0


# -- render -------------------------------------------------------------------------------------

def _window_arg(text: str):
    from app.dicom.display import Window

    try:
        center, width = (float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--window takes CENTER,WIDTH (two numbers), not '{text}'") from None
    if width <= 0:
        raise UsageError("--window: the width must be greater than 0")
    return Window(center, width)


def cmd_render(args) -> int:
    from app.dicom import display
    from app.dicom.pixels import Image
    from app.dicom.reading import read

    out = Path(args.output)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UsageError(f"{out}: the output must end in .png, .jpg or .jpeg")
    if args.size is not None and args.size < 1:
        raise UsageError("--size must be a positive number of pixels")
    image = Image(read(args.file), args.file)
    if not 1 <= args.frame <= image.frames:
        raise UsageError(f"frame {args.frame} does not exist: the image has {image.frames} frame(s), numbered from 1")
    frame = args.frame - 1
    if args.window:
        voi = _window_arg(args.window)
    elif args.preset:
        voi = display.find_preset(image, args.preset, frame).voi
    else:
        voi = display.default_voi(image, frame, auto_for_projection=False)
    pixels = display.render(image, frame, voi, invert=args.invert, longest_side=args.size)
    from app.ui.images import save_image

    save_image(pixels, out)
    if args.json:
        _print_json({"output": str(out), "width": pixels.shape[1], "height": pixels.shape[0],
                     "color": pixels.ndim == 3, "frame": args.frame, "voi": str(voi)})
    return 0


# -- view ---------------------------------------------------------------------------------------

def cmd_view(args) -> int:
    if _hand_over(["view", *[str(Path(p).absolute()) for p in args.paths]]):
        return 0
    from app.ui.main_window import run

    return run(args.paths)


# -- library ------------------------------------------------------------------------------------

def _run_job(title: str, work):
    """Run a job on this thread, showing progress on a terminal's stderr."""
    from app.jobs import Job

    job = Job(work, title)
    if sys.stderr.isatty():
        def show(j):
            p = j.progress
            if p.total:
                print(f"\r{title}: {int(p.done)}/{int(p.total)}", end="", file=sys.stderr, flush=True)
        job.on_progress(show)
        job.on_finished(lambda j: print(file=sys.stderr))
    return job.run().wait()


def _capture_context(args):
    from app.dicom.capture import CaptureContext
    from app.dicom.patient import Patient
    from app.library import Library

    if args.study:
        with Library() as library:
            study = library.study(args.study)
        return CaptureContext(patient=study.patient, study_uid=study.uid, study_date=study.date,
                              study_time=study.time, study_description=study.description, accession=study.accession,
                              referring_physician=study.referring_physician)
    patient = Patient(name=args.patient_name, id=args.patient_id, species=args.species, breed=args.breed,
                      owner=args.owner)
    if patient == Patient():
        return None
    return CaptureContext(patient=patient, study_description=args.description)


def _worklist_context(args):
    """The capture context of the chosen worklist entry; its MPPS is started (when wanted) at import."""
    from app.pacs.config import PacsConfigs
    from app.pacs.worklist import WorklistQuery, choose, find_worklist

    if not args.order:
        raise UsageError("--worklist needs --order (the entry's accession number, step ID or study UID).")
    if args.study or args.patient_name or args.patient_id:
        raise UsageError("--worklist gives the patient and study: leave out --study and --patient-*.")
    config = PacsConfigs.load().find(args.worklist)
    entry = choose(find_worklist(config, WorklistQuery()), args.order)
    return config, entry


def cmd_import(args) -> int:
    from app.library import Library, import_paths
    from app.pacs.worklist import start_procedure

    if args.worklist:
        config, entry = _worklist_context(args)
        with Library() as library:
            result = _run_job("Importing", lambda reporter: import_paths(
                args.paths, library=library, context=entry.capture_context(), reporter=reporter))
            if result.studies and (entry.study_uid in result.studies or not entry.study_uid):
                mpps_uid = start_procedure(library, config, entry, result.studies[0])
                if mpps_uid and not args.json:
                    print(f"procedure step {mpps_uid} in progress at {config.aet}")
        return _import_report(args, result)
    context = _capture_context(args)
    result = _run_job("Importing", lambda reporter: import_paths(args.paths, context=context, reporter=reporter))
    return _import_report(args, result)


def _import_report(args, result) -> int:
    if args.json:
        _print_json(result.as_dict())
    else:
        for entry in result.failed:
            print(f"failed: {entry.path}: {entry.error}")
        for conflict in result.conflicts:
            print(f"conflict: {conflict.message}")
        print(result.summary())
    if result.stopped:
        print(f"error: {result.stopped}", file=sys.stderr)
    return 1 if result.failed else 0


def _study_line(study) -> str:
    from app.dicom.summary import format_date

    p = study.patient
    who = " · ".join(x for x in (p.name or "(no name)", f"ID {p.id}" if p.id else "", p.species, p.breed,
                                 f"owner {p.owner}" if p.owner else "") if x)
    what = " · ".join(x for x in (format_date(study.date), study.modalities.replace("\\", "/"), study.description,
                                  f"accession {study.accession}" if study.accession else "",
                                  _counts(study)) if x)
    return f"{who}\n    {what}\n    {study.uid}"


def _counts(study) -> str:
    if study.series_count is None and study.instance_count is None:
        return ""
    return f"{_or_unknown(study.series_count)} series, {_or_unknown(study.instance_count)} images"


def _or_unknown(n) -> str:
    return "?" if n is None else str(n)


def cmd_library(args) -> int:
    from app.library import Library

    with Library() as library:
        if args.library_command == "list":
            studies = library.studies(args.query)
            if args.json:
                _print_json([s.as_dict() for s in studies])
            elif not studies:
                print("No studies match." if args.query else "The library is empty.")
            else:
                for study in studies:
                    print(_study_line(study))
            return 0
        if args.library_command == "remove":
            count = library.remove_study(args.study_uid)
            if args.json:
                _print_json({"study_uid": args.study_uid, "instances_removed": count})
            else:
                print(f"Removed study {args.study_uid} ({count} images).")
            return 0
        report = library.check(repair=not args.dry_run)
        if args.json:
            _print_json({"clean": report.clean, **report.__dict__})
        elif report.clean:
            print("The library is consistent.")
        else:
            verb = "found" if args.dry_run else "repaired"
            for label, items in (("partial files", report.partial_files_removed),
                                 ("rows without a file", report.missing_files),
                                 ("files without a row", report.adopted_files),
                                 ("unreadable or misplaced files (left in place)", report.unreadable_files)):
                if items:
                    print(f"{len(items)} {label} {verb if 'left' not in label else ''}".rstrip())
                    for item in items:
                        print(f"    {item}")
        return 0


# -- export -------------------------------------------------------------------------------------

def cmd_export(args) -> int:
    from app.library.export import export_study

    voi = _window_arg(args.window) if args.window else None
    result = _run_job("Exporting", lambda reporter: export_study(
        args.study_uid, args.to, format=args.format, anonymize=args.anonymize, voi=voi, preset=args.preset,
        reporter=reporter, measurements=args.measurements))
    if args.json:
        _print_json(result.as_dict())
    else:
        for warning in result.warnings:
            print(f"warning: {warning}")
        print(result.summary())
    return 0


# -- measurements ---------------------------------------------------------------------------------

def cmd_measurements(args) -> int:
    from app.measure.export import export_measurements

    result = export_measurements(args.study_uid, format=args.format, to=args.output)
    if result.path is not None:
        print(f"Wrote {result.count} measurement{'s' if result.count != 1 else ''} to {result.path}")
    else:
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(encoding="utf-8")  # degrees, ², ± and names as they are
        sys.stdout.write(result.text)
    return 0


# -- links ----------------------------------------------------------------------------------------

def _hand_over(request: list[str]) -> bool:
    """Give a window request to the Lightbox already running, before anything heavy is imported."""
    from app.desktop.single_instance import hand_over

    return hand_over(request)


def cmd_open(args) -> int:
    if not args.no_gui:
        if _hand_over(["open", args.uri]):
            return 0
        from app.ui.main_window import run

        return run([], links=[args.uri])
    from app.links.open import open_link

    result = _run_job("Downloading", lambda reporter: open_link(args.uri, reporter=reporter))
    if args.json:
        _print_json(result.as_dict())
    else:
        for warning in result.warnings:
            print(f"warning: {warning}")
        for entry in result.imported.failed:
            print(f"failed: {entry.path}: {entry.error}")
        for conflict in result.imported.conflicts:
            print(f"conflict: {conflict.message}")
        print(result.imported.summary())
        for uid in result.study_uids:
            print(f"study {uid}")
    return 1 if result.imported.failed else 0


def cmd_scheme(args) -> int:
    from app.desktop import scheme

    where = scheme.register() if args.command == "register-scheme" else scheme.unregister()
    if args.json:
        _print_json({"registered": args.command == "register-scheme", "where": where})
    else:
        print(f"lightbox:// links {'open Lightbox' if args.command == 'register-scheme' else 'no longer open Lightbox'}"
              f" ({where}).")
    return 0


# -- pacs -----------------------------------------------------------------------------------------

def _pacs_config(args, base=None):
    """A PacsConfig from the command line; with `base`, a copy of it changed where options were given."""
    from app.pacs import config as pc

    given = {k: v for k, v in vars(args).items() if v is not None}
    kind = given.get("type") or (base.type if base else None)
    if base is not None and kind != base.type:
        raise pc.ConfigError("type", f"The type of a configuration cannot change ({pc.TYPE_NAMES[base.type]}); "
                             "remove it and add a new one instead.")
    data = base.as_dict() if base else {"type": kind, "name": "", "aet": ""}
    data["name"] = given.get("name", data["name"])
    data["aet"] = given.get("aet", data["aet"])
    wrong = [f"--{k.replace('_', '-')}" for k in given if k in _OPTIONS_OF[pc.DIMSE if kind == pc.DICOMWEB
                                                                              else pc.DICOMWEB]]
    if wrong:
        raise UsageError(f"{', '.join(wrong)} {'does' if len(wrong) == 1 else 'do'} not apply to a "
                         f"{pc.TYPE_NAMES[kind]} configuration.")
    if kind == pc.DICOMWEB:
        o = data.get("dicomweb") or {"url": ""}
        for key in ("url", "auth", "user", "source_aet", "ca_file"):
            if key in given:
                o[key] = given[key]
        if "header" in given:
            o["headers"] = [list(pc.check_header(h)) for h in given["header"]]
        for flag, key in (("qido", "qido"), ("stow", "stow"), ("multipart", "multipart_stow")):
            if flag in given:
                o[key] = given[flag]
        data["dicomweb"] = o
    else:
        o = data.get("dimse") or {"host": ""}
        for key in ("host", "port", "test_aet", "query_aet", "retrieve_method", "move_aet", "move_port", "ca_file",
                    "client_cert", "client_key"):
            if key in given:
                o[key] = given[key]
        if "mwl_charset" in given:
            o["mwl_charset"] = given["mwl_charset"].replace("_", " ").replace("ISO IR", "ISO_IR")
        if "calling_aet" in given:
            o["local_aets"] = [a.strip() for a in given["calling_aet"]]
            o.setdefault("test_aet", o["local_aets"][0])
            if "test_aet" not in given:
                o["test_aet"] = o["local_aets"][0]
            if "query_aet" not in given:
                o["query_aet"] = o["local_aets"][0]
        for key in ("store", "query_retrieve", "mwl", "mpps", "tls"):
            if key in given:
                o[key] = given[key]
        data["dimse"] = o
    return pc.PacsConfig.from_dict(data)


_OPTIONS_OF = {
    "dicomweb": {"url", "auth", "user", "secret_stdin", "header", "qido", "stow", "multipart", "source_aet"},
    "dimse": {"host", "port", "calling_aet", "test_aet", "query_aet", "store", "query_retrieve",
              "retrieve_method", "move_aet", "move_port", "mwl", "mwl_charset", "mpps", "tls", "client_cert",
              "client_key"},
}


def _pacs_line(config) -> str:
    return f"[{config.badge}] {config.aet:<16} {config.name} · {config.address} · {', '.join(config.functions)}"


def cmd_pacs(args) -> int:
    from app.pacs.config import PacsConfigs

    configs = PacsConfigs.load()
    command = args.pacs_command
    if command == "list":
        if args.json:
            _print_json({"allow_transfer": configs.allow_transfer, "configs": [
                {**c.as_dict(), "badge": c.badge, "functions": c.functions} for c in configs.configs]})
        elif not configs.configs:
            print("No PACS configurations. Add one with: lightbox pacs add --type dicomweb|dimse ...")
        else:
            for config in configs.configs:
                print(_pacs_line(config))
            if not configs.allow_transfer:
                print("Transfer to PACS is switched off (lightbox pacs transfer on).")
        return 0
    if command in ("add", "edit"):
        secret = sys.stdin.readline().rstrip("\r\n") if getattr(args, "secret_stdin", False) else None
        if command == "add":
            config = _pacs_config(args)
            warnings = configs.add(config, secret)
        else:
            config = _pacs_config(args, base=configs.find(args.key))
            warnings = configs.update(args.key, config, secret)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if args.json:
            _print_json({**config.as_dict(), "badge": config.badge, "warnings": warnings})
        else:
            print(f"{'Added' if command == 'add' else 'Changed'}: {_pacs_line(config)}")
        return 0
    if command == "show":
        config = configs.find(args.key)
        if args.json:
            _print_json({**config.as_dict(), "badge": config.badge, "functions": config.functions})
        else:
            print(_pacs_line(config))
            options = config.dicomweb or config.dimse
            for key, value in vars(options).items():
                print(f"    {key}: {value}")
        return 0
    if command == "remove":
        config = configs.remove(args.key)
        print(f"Removed: {_pacs_line(config)}")
        return 0
    if command == "transfer":
        configs.allow_transfer = args.state == "on"
        configs.save()
        print(f"Transfer to PACS is {'allowed' if configs.allow_transfer else 'switched off'}.")
        return 0
    if command == "export":
        print(f"Exported {configs.export_file(Path(args.file))} configuration(s), without passwords or tokens.")
        return 0
    if command == "import":
        added, skipped = configs.import_file(Path(args.file))
        for line in skipped:
            print(f"skipped: {line}")
        print(f"Imported {len(added)} configuration(s); add their passwords with lightbox pacs edit AET "
              "--secret-stdin." if added else "Nothing imported.")
        return 0
    from app.pacs.connection import test_connection

    config = configs.find(args.key)
    result = test_connection(config, configs.secret(config))
    if args.json:
        _print_json(result.as_dict())
    else:
        print(result.message)
        for line in result.details:
            print(f"    {line}")
    return 0 if result.ok else 1


# -- send and outbox --------------------------------------------------------------------------------

def _send_lines(outbox, record) -> list[str]:
    lines = [record.describe()]
    for item in outbox.items(record.id):
        if item.state != "sent":
            code = f" (0x{item.status:04X})" if item.status is not None else ""
            lines.append(f"    {item.state}: {item.sop_uid}{code} {item.message}".rstrip())
    return lines


def cmd_send(args) -> int:
    import time as _time

    from app.library import Library, import_paths
    from app.pacs.config import PacsConfigs
    from app.pacs.outbox import Outbox

    configs = PacsConfigs.load()
    destination = configs.find(args.to)
    if destination not in configs.exporting():
        raise UsageError(f"{destination.aet} does not receive studies from Lightbox (transfer to PACS is off, or "
                         "its export function is not enabled).")
    with Library() as library:
        study_uids, sop_uids = [], []
        paths = [w for w in args.what if Path(w).exists()]
        study_uids = [w for w in args.what if w not in paths]
        for uid in study_uids:
            library.study(uid)  # a clear error for an unknown study, before anything is queued
        if paths:
            imported = import_paths(paths, library=library)
            for entry in imported.failed:
                print(f"not sent: {entry.path}: {entry.error}", file=sys.stderr)
            sop_uids = [e.sop_instance_uid for e in imported.entries if e.status != "failed"]
        outbox = Outbox(library)
        send_id = outbox.queue(destination, study_uids=study_uids, sop_uids=sop_uids)
        deadline = _time.monotonic() + max(0.0, args.wait)
        while True:
            record = _run_job("Sending", lambda reporter: outbox.run(send_id, configs=configs, reporter=reporter))
            if record.state != "waiting" or _time.monotonic() + 0.1 >= deadline:
                break
            pause = min(record.next_attempt_at - _time.time(), deadline - _time.monotonic())
            print(f"{record.last_error}; retrying in {max(0, round(pause))} s", file=sys.stderr)
            _time.sleep(max(0.0, pause))
        if args.json:
            _print_json({**record.as_dict(), "instances": [vars(i) for i in outbox.items(send_id)]})
        else:
            print("\n".join(_send_lines(outbox, record)))
        if record.state == "waiting":
            print(f"error: {record.last_error}; the send stays in the outbox and is retried (lightbox outbox)",
                  file=sys.stderr)
        return 0 if record.state == "done" else 1


def cmd_outbox(args) -> int:
    from app.library import Library
    from app.pacs.outbox import Outbox

    command = args.outbox_command or "list"
    with Library() as library:
        outbox = Outbox(library)
        if command == "list":
            records = outbox.sends(active_only=not getattr(args, "all", False))
            if args.json:
                _print_json([r.as_dict() for r in records])
            elif not records:
                print("The outbox is empty.")
            else:
                for record in records:
                    print("\n".join(_send_lines(outbox, record)))
            return 0
        if command == "cancel":
            outbox.cancel(args.send_id)
            record = outbox.send(args.send_id)
        elif command == "retry":
            outbox.retry(args.send_id)
            record = _run_job("Sending", lambda reporter: outbox.run(args.send_id, reporter=reporter))
        else:
            records = _run_job("Sending", lambda reporter: outbox.run_due(reporter=reporter))
            if args.json:
                _print_json([r.as_dict() for r in records])
            else:
                print("\n".join(line for r in records for line in _send_lines(outbox, r)) or "Nothing was due.")
            return 0 if all(r.state == "done" for r in records) else 1
        if args.json:
            _print_json(record.as_dict())
        else:
            print("\n".join(_send_lines(outbox, record)))
        return 0 if record.state in ("done", "cancelled") else 1


# -- query / retrieve / worklist ------------------------------------------------------------------

def _importing_config(key: str):
    from app.pacs.config import PacsConfigs

    configs = PacsConfigs.load()
    config = configs.find(key)
    return config, configs.secret(config)


def cmd_query(args) -> int:
    from app.pacs.query import StudyQuery, find_series, find_studies

    config, secret = _importing_config(args.pacs)
    query = StudyQuery.with_dates(args.date, patient_name=args.patient_name, patient_id=args.patient_id,
                                  owner=args.owner, species=args.species, accession=args.accession,
                                  modality=args.modality, description=args.description)
    studies = find_studies(config, query, secret=secret)
    if args.series:
        for study in studies:
            study.series = find_series(config, study.uid, secret=secret)
    if args.json:
        _print_json([s.as_dict() for s in studies])
        return 0
    for study in studies:
        print(_study_line(study))
        for series in study.series:
            count = f"{series.instance_count} images" if series.instance_count is not None else ""
            print("      " + " · ".join(x for x in (f"#{series.number}" if series.number is not None else "",
                                                  series.modality, series.description, count, series.uid) if x))
    print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} on {config.aet}")
    return 0


def cmd_retrieve(args) -> int:
    from app.pacs.retrieve import retrieve

    config, secret = _importing_config(args.pacs)
    result = _run_job("Retrieving", lambda reporter: retrieve(
        config, args.study_uid, series_uid=args.series, method=args.method, reporter=reporter, secret=secret))
    if args.json:
        _print_json(result.as_dict())
    else:
        for note in result.notes:
            print(f"note: {note}")
        for entry in result.imported.failed:
            print(f"failed: {entry.path}: {entry.error}")
        for conflict in result.imported.conflicts:
            print(f"conflict: {conflict.message}")
        print(result.summary())
    return 0 if result.ok else 1


def cmd_receive(args) -> int:
    import threading

    from app import settings as app_settings
    from app.pacs.receiver import Receiving

    settings = app_settings.load()
    aet = args.aet or settings.receive_aet
    port = args.port if args.port is not None else settings.receive_port

    def show(entry) -> None:
        if args.json:
            print(json.dumps(entry.as_dict(), ensure_ascii=False), flush=True)
        else:
            print(f"{entry.status}: {entry.path}" + (f": {entry.error}" if entry.error else ""), flush=True)

    import signal

    def stop(*_):
        raise KeyboardInterrupt

    service = Receiving(aet, port, on_import=show).start()
    print(f"receiving as {aet} on port {port}; Ctrl+C stops", file=sys.stderr, flush=True)
    try:
        signal.signal(signal.SIGTERM, stop)  # what arrived is committed before the process ends
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
    return 0


def cmd_worklist(args) -> int:
    from app.pacs.worklist import WorklistQuery, find_worklist

    config, _ = _importing_config(args.pacs)
    dates = "" if args.date.strip().lower() in ("any", "") else args.date
    query = WorklistQuery.with_dates(dates, modality=args.modality, station_aet=args.station,
                                     patient_name=args.patient_name)
    entries = find_worklist(config, query)
    if args.json:
        _print_json([e.as_dict() for e in entries])
        return 0
    for e in entries:
        p = e.patient
        who = " · ".join(x for x in (p.name or "(no name)", f"ID {p.id}" if p.id else "", p.species, p.breed,
                                     f"owner {p.owner}" if p.owner else "") if x)
        when = f"{e.scheduled_date} {e.scheduled_time[:4]}".strip()
        what = " · ".join(x for x in (when, e.modality, e.requested_procedure or e.step_description,
                                      f"accession {e.accession}" if e.accession else "",
                                      f"step {e.step_id}" if e.step_id else "",
                                      f"station {e.station_aet}" if e.station_aet else "") if x)
        print(f"{who}\n    {what}")
    print(f"{len(entries)} worklist entr{'y' if len(entries) == 1 else 'ies'} on {config.aet}")
    return 0


_COMMANDS = {"info": cmd_info, "render": cmd_render, "view": cmd_view, "import": cmd_import,
             "library": cmd_library, "export": cmd_export, "open": cmd_open, "register-scheme": cmd_scheme,
             "unregister-scheme": cmd_scheme, "pacs": cmd_pacs, "send": cmd_send, "outbox": cmd_outbox,
             "query": cmd_query, "retrieve": cmd_retrieve, "worklist": cmd_worklist,
             "receive": cmd_receive, "measurements": cmd_measurements}
