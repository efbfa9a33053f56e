"""The outbox: every send to a PACS, recorded in the library's index before the first byte goes out.

A send is claimed by one process at a time (state 'sending', with its pid); each instance's outcome is
committed the moment the PACS confirms it, so a killed Lightbox resumes where it stopped and never
sends a confirmed instance again. A PACS that cannot be reached is retried on a visible schedule.

States of a send: queued -> sending -> done | waiting (retry at next_attempt_at) | failed (some
instances refused) | cancelled.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import asdict, dataclass, field

from app.errors import Cancelled, UsageError
from app.library import Library
from app.library.store import process_alive
from app.pacs.config import PacsConfig, PacsConfigs

log = logging.getLogger(__name__)

RETRY_SCHEDULE_S = (10, 30, 60, 120, 300, 600, 1800, 3600)  # then hourly
CONFIRMED = ("sent", "warning")


def retry_delay(attempts: int) -> int:
    """Seconds to wait after `attempts` failed attempts."""
    return RETRY_SCHEDULE_S[min(attempts, len(RETRY_SCHEDULE_S)) - 1] if attempts > 0 else 0


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class SendRecord:
    id: int
    destination_id: str
    destination: str
    title: str
    state: str
    created_at: str
    attempts: int
    next_attempt_at: float
    last_error: str
    finished_at: str
    counts: dict[str, int] = field(default_factory=dict)  # pending / sent / warning / failed
    bytes_total: int = 0
    bytes_done: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def confirmed(self) -> int:
        return self.counts.get("sent", 0) + self.counts.get("warning", 0)

    def describe(self) -> str:
        text = f"#{self.id} {self.title} -> {self.destination}: {self.state}, {self.confirmed}/{self.total} confirmed"
        if self.counts.get("failed"):
            text += f", {self.counts['failed']} refused"
        if self.state == "waiting":
            wait = max(0, round(self.next_attempt_at - time.time()))
            text += f"; next attempt in {wait} s (attempt {self.attempts + 1})"
        if self.last_error and self.state in ("waiting", "failed", "done"):
            text += f"; last error: {self.last_error}"
        return text

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total, "confirmed": self.confirmed}


@dataclass
class ItemRecord:
    sop_uid: str
    study_uid: str
    state: str
    status: int | None
    message: str


class Outbox:
    def __init__(self, library: Library):
        self.library = library
        self.db = library.db

    # -- recording -----------------------------------------------------------------------------

    def queue(self, destination: PacsConfig, *, study_uids=(), sop_uids=(), title: str = "",
              mpps_uid: str = "") -> int:
        """Record a send of whole studies and/or single instances; returns its id. Nothing is sent yet.
        With `mpps_uid` (an MPPS the worklist flow started), the send reports it COMPLETED when done."""
        instances = []
        for uid in study_uids:
            instances += self.library.instances(study_uid=uid)
        for uid in sop_uids:
            instances.append(self.library.instance(uid))
        unique = list({i.sop_uid: i for i in instances}.values())
        if not unique:
            raise UsageError("There is nothing to send.")
        if not mpps_uid:  # a study begun from a worklist entry completes its procedure step when sent
            for uid in dict.fromkeys(i.study_uid for i in unique):
                known = self.library.procedure(uid)
                if known is not None and known[2] == "in progress":
                    mpps_uid = known[1]
                    break
        if not title:
            first = self.library.study(unique[0].study_uid)
            name = first.patient.animal_name or first.patient.name or "(no name)"
            title = f"{name}: {first.description or 'study'}"
            studies = {i.study_uid for i in unique}
            if len(studies) > 1:
                title += f" and {len(studies) - 1} more"
        store_root = self.library.store.root
        self.library.begin()
        try:
            pk = self.db.execute(
                "INSERT INTO sends (destination_id, destination, title, state, created_at, mpps_uid, mpps_state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (destination.id, f"{destination.name} ({destination.aet})", title, "queued", _now(), mpps_uid,
                 "pending" if mpps_uid else "")).lastrowid
            self.db.executemany(
                "INSERT INTO send_items (send_pk, sop_uid, study_uid, path, size, state) VALUES (?, ?, ?, ?, ?, ?)",
                [(pk, i.sop_uid, i.study_uid, i.path.relative_to(store_root).as_posix(), i.file_size, "pending")
                 for i in unique])
            self.library.commit()
        except BaseException:
            self.library.rollback()
            raise
        log.info("queued send #%s of %s instances to %s", pk, len(unique), destination.aet)
        return pk

    # -- reading -------------------------------------------------------------------------------

    def sends(self, *, active_only: bool = False) -> list[SendRecord]:
        sql = ("SELECT pk, destination_id, destination, title, state, created_at, attempts, next_attempt_at, "
               "last_error, finished_at FROM sends")
        if active_only:
            sql += " WHERE state IN ('queued', 'sending', 'waiting')"
        records = [SendRecord(*row) for row in self.db.execute(sql + " ORDER BY pk DESC")]
        for record in records:
            self._fill(record)
        return records

    def send(self, send_id: int) -> SendRecord:
        row = self.db.execute("SELECT pk, destination_id, destination, title, state, created_at, attempts, "
                              "next_attempt_at, last_error, finished_at FROM sends WHERE pk = ?", (send_id,)).fetchone()
        if row is None:
            raise UsageError(f"There is no send #{send_id} in the outbox.")
        return self._fill(SendRecord(*row))

    def items(self, send_id: int) -> list[ItemRecord]:
        return [ItemRecord(*row) for row in self.db.execute(
            "SELECT sop_uid, study_uid, state, status, message FROM send_items WHERE send_pk = ? ORDER BY pk",
            (send_id,))]

    def _fill(self, record: SendRecord) -> SendRecord:
        record.counts = {state: n for state, n in self.db.execute(
            "SELECT state, COUNT(*) FROM send_items WHERE send_pk = ? GROUP BY state", (record.id,))}
        record.bytes_total, record.bytes_done = self.db.execute(
            "SELECT COALESCE(SUM(size), 0), COALESCE(SUM(CASE WHEN state IN ('sent', 'warning') THEN size END), 0) "
            "FROM send_items WHERE send_pk = ?", (record.id,)).fetchone()
        return record

    def due(self) -> list[int]:
        """Sends to run now: queued, or waiting whose time has come; and sends of a process that died."""
        self._release_abandoned()
        return [pk for (pk,) in self.db.execute(
            "SELECT pk FROM sends WHERE state = 'queued' OR (state = 'waiting' AND next_attempt_at <= ?) ORDER BY pk",
            (time.time(),))]

    def _release_abandoned(self) -> None:
        for pk, pid in self.db.execute("SELECT pk, owner_pid FROM sends WHERE state = 'sending'").fetchall():
            if pid is None or not process_alive(pid):
                log.info("send #%s was interrupted; it resumes", pk)
                self.db.execute("UPDATE sends SET state = 'queued', owner_pid = NULL WHERE pk = ? AND state = 'sending'",
                                (pk,))

    # -- changing ------------------------------------------------------------------------------

    def retry(self, send_id: int) -> None:
        """Run again as soon as possible; instances the PACS refused are tried again too."""
        record = self.send(send_id)
        if record.state == "sending":
            raise UsageError(f"Send #{send_id} is under way.")
        mpps_state = self.db.execute("SELECT mpps_state FROM sends WHERE pk = ?", (send_id,)).fetchone()[0]
        if record.state == "done" and mpps_state != "failed":
            raise UsageError(f"Send #{send_id} is complete: every instance was confirmed.")
        self.library.begin()
        self.db.execute("UPDATE send_items SET state = 'pending', status = NULL, message = '' "
                        "WHERE send_pk = ? AND state = 'failed'", (send_id,))
        self.db.execute("UPDATE sends SET state = 'queued', next_attempt_at = 0, finished_at = '' WHERE pk = ?",
                        (send_id,))
        self.library.commit()

    def cancel(self, send_id: int) -> None:
        """Stop a send; what the PACS confirmed stays confirmed. A send under way stops at its next instance."""
        record = self.send(send_id)
        if record.state in ("done", "cancelled"):
            raise UsageError(f"Send #{send_id} is already {record.state}.")
        self.db.execute("UPDATE sends SET state = 'cancelled', finished_at = ? WHERE pk = ?", (_now(), send_id))

    def _claim(self, send_id: int) -> bool:
        cursor = self.db.execute(
            "UPDATE sends SET state = 'sending', owner_pid = ? WHERE pk = ? "
            "AND state IN ('queued', 'waiting')", (os.getpid(), send_id))
        return cursor.rowcount == 1

    def _cancelled(self, send_id: int) -> bool:
        row = self.db.execute("SELECT state FROM sends WHERE pk = ?", (send_id,)).fetchone()
        return row is None or row[0] == "cancelled"

    # -- running -------------------------------------------------------------------------------

    def run(self, send_id: int, *, configs: PacsConfigs | None = None, reporter=None) -> SendRecord:
        """Send what is still unconfirmed; record every outcome at once. Returns the send as it ends."""
        from app.pacs.send import Outcome, SendError, send_instances

        if not self._claim(send_id):
            record = self.send(send_id)
            raise UsageError(f"Send #{send_id} cannot run now (it is {record.state}).")
        configs = configs or PacsConfigs.load()
        record = self.send(send_id)
        try:
            destination = next((c for c in configs.configs if c.id == record.destination_id), None)
            if destination is None:
                return self._end(send_id, "failed", "its PACS configuration no longer exists")
            if not configs.allow_transfer or not destination.exports:
                return self._end(send_id, "failed", f"sending to {destination.aet} is switched off")
            pending = self.db.execute("SELECT sop_uid, path, study_uid FROM send_items WHERE send_pk = ? "
                                      "AND state = 'pending' ORDER BY pk", (send_id,)).fetchall()
            studies = {sop_uid: study_uid for sop_uid, _, study_uid in pending}
            files, missing = [], []
            for sop_uid, path, _ in pending:
                absolute = self.library.store.absolute(path)
                (files if absolute.is_file() else missing).append((sop_uid, absolute))
            for sop_uid, _ in missing:
                self._record(send_id, Outcome(sop_uid, "failed", None, "the file is no longer in the library"))
            done = self.send(send_id).confirmed

            def on_outcome(outcome: Outcome) -> None:
                nonlocal done
                self._record(send_id, outcome)
                done += outcome.state in CONFIRMED
                if reporter:
                    reporter.update(done, record.total, f"Sending to {destination.aet}: {done} of {record.total}")
                if self._cancelled(send_id):
                    raise Cancelled("The send was cancelled; what the PACS confirmed stays there.")

            try:
                if files:
                    send_instances(destination, files, secret=configs.secret(destination), on_outcome=on_outcome,
                                   reporter=reporter, studies=studies)
            except SendError as exc:
                return self._retry_later(send_id, str(exc))
            except Cancelled:
                if not self._cancelled(send_id):
                    self._end(send_id, "queued", "")
                raise
            failed = self.send(send_id).counts.get("failed", 0)
            if failed:
                return self._end(send_id, "failed", f"the PACS refused {failed} instance(s)")
            return self._end(send_id, "done", self._complete_mpps(send_id, destination, configs))
        except BaseException:
            state = self.db.execute("SELECT state FROM sends WHERE pk = ?", (send_id,)).fetchone()
            if state and state[0] == "sending":
                self._end(send_id, "queued", "")  # an unexpected stop: it will run again
            raise

    def run_due(self, *, configs: PacsConfigs | None = None, reporter=None) -> list[SendRecord]:
        out = []
        for send_id in self.due():
            try:
                out.append(self.run(send_id, configs=configs, reporter=reporter))
            except UsageError:
                continue  # claimed by another process meanwhile
        return out

    def _complete_mpps(self, send_id: int, destination: PacsConfig, configs: PacsConfigs | None = None) -> str:
        """N-SET the send's MPPS to COMPLETED, at the PACS whose worklist began it (else the destination); '' when
        done or not wanted, else what went wrong."""
        from app.pacs import mpps
        from app.pacs.send import SendError

        uid, state = self.db.execute("SELECT mpps_uid, mpps_state FROM sends WHERE pk = ?", (send_id,)).fetchone()
        if not uid or state == "completed":
            return ""
        started_at = self.db.execute("SELECT config_id FROM procedures WHERE mpps_uid = ?", (uid,)).fetchone()
        if started_at is not None and configs is not None:
            destination = next((c for c in configs.configs if c.id == started_at[0]), destination)
        if destination.type != "dimse" or not destination.dimse.mpps:
            self.db.execute("UPDATE sends SET mpps_state = 'not wanted' WHERE pk = ?", (send_id,))
            return ""
        series: dict[str, mpps.PerformedSeries] = {}
        for item in self.items(send_id):
            instance = self.library.instance(item.sop_uid)
            performed = series.setdefault(instance.series_uid, mpps.PerformedSeries(instance.series_uid))
            performed.instances.append((instance.sop_class, instance.sop_uid))
        for record in self.library.series(self.library.instance(self.items(send_id)[0].sop_uid).study_uid):
            if record.uid in series:
                series[record.uid].description = record.description
        try:
            mpps.complete(destination, uid, list(series.values()))
        except SendError as exc:
            self.db.execute("UPDATE sends SET mpps_state = 'failed' WHERE pk = ?", (send_id,))
            return f"the images arrived, but MPPS COMPLETED could not be reported: {exc}"
        self.db.execute("UPDATE sends SET mpps_state = 'completed' WHERE pk = ?", (send_id,))
        self.library.end_procedure(uid)
        return ""

    def _record(self, send_id: int, outcome) -> None:
        self.db.execute("UPDATE send_items SET state = ?, status = ?, message = ? WHERE send_pk = ? AND sop_uid = ?",
                        (outcome.state, outcome.status, outcome.message, send_id, outcome.sop_uid))

    def _retry_later(self, send_id: int, reason: str) -> SendRecord:
        attempts = self.db.execute("SELECT attempts FROM sends WHERE pk = ?", (send_id,)).fetchone()[0] + 1
        when = time.time() + retry_delay(attempts)
        self.db.execute("UPDATE sends SET state = 'waiting', owner_pid = NULL, attempts = ?, next_attempt_at = ?, "
                        "last_error = ? WHERE pk = ?", (attempts, when, reason, send_id))
        log.info("send #%s: %s; retry in %s s", send_id, reason, retry_delay(attempts))
        return self.send(send_id)

    def _end(self, send_id: int, state: str, error: str) -> SendRecord:
        finished = _now() if state in ("done", "failed") else ""
        self.db.execute("UPDATE sends SET state = ?, owner_pid = NULL, last_error = ?, finished_at = ? WHERE pk = ?",
                        (state, error, finished, send_id))
        return self.send(send_id)

