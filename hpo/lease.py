"""The study lease: one driver per study at a time, and workers that notice when it is gone.

A driver (``hpo run``, ``hpo resume``, ``Study.run``) holds a claim in the parent study's user
attrs, ``hpo.lease/<token>``: ``{owner: host:pid, since, renewed_at}`` (epoch seconds), renewed
by a thread every ``HPO_LEASE_INTERVAL`` seconds (default 5) and released (set to None) when
the driver ends. A claim is live while renewed within ``HPO_LEASE_GRACE`` seconds (default 3
intervals) and its process, when it runs on this host, has not ended.

Taking the lease: look (read only; a live claim of another driver refuses at once, nothing
written), write our claim, read back. Journal and RDB storages serialise writes, so of two
drivers racing, the later writer always sees the earlier claim and withdraws; both may withdraw,
never both hold. Dead claims are cleared by the driver that takes the study over.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime

from hpo.errors import InputError, env_number
from hpo.liveness import interruptible, process_gone, worker_id
from hpo.records import ATTR
from hpo.storage import parent_attrs

__all__ = [
    "PREFIX",
    "Claim",
    "DriverGone",
    "Lease",
    "LeaseHeld",
    "Watch",
    "check",
    "lease_settings",
    "takeover_note",
]

PREFIX = "hpo.lease/"


class LeaseHeld(InputError):
    """Another live driver holds the study: one line naming it, exit code 2, nothing written."""


class DriverGone(RuntimeError):
    """``hpo worker``: no driver holds the study's lease any more."""


def lease_settings() -> tuple[float, float]:
    """(renewal interval, grace period) in seconds from ``HPO_LEASE_INTERVAL`` and
    ``HPO_LEASE_GRACE``; set them the same on every machine of a study."""
    accepted = "a number of seconds > 0"
    interval = env_number("HPO_LEASE_INTERVAL", float, InputError, accepted) or 5.0
    grace = env_number("HPO_LEASE_GRACE", float, InputError, accepted) or 3 * interval
    return interval, grace


@dataclass(frozen=True)
class Claim:
    token: str
    owner: str  # host:pid of the driver
    since: float
    renewed_at: float

    def live(self, grace: float, now: float | None = None) -> bool:
        fresh = (now or time.time()) - self.renewed_at <= grace
        return fresh and not process_gone(self.owner, datetime.fromtimestamp(self.since))

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.since).isoformat(sep=" ", timespec="seconds")
        ago = time.time() - self.renewed_at
        return f"{self.owner} since {since} (renewed {ago:.0f} s ago)"


def claims(attrs: dict | None) -> list[Claim]:
    """The claims not released, oldest first."""
    out = []
    for key, value in (attrs or {}).items():
        if key.startswith(PREFIX) and isinstance(value, dict):
            out.append(Claim(key.removeprefix(PREFIX), **value))
    return sorted(out, key=lambda c: c.since)


def check(attrs: dict | None, name: str, grace: float | None = None, mine: str = "") -> None:
    """Refuse (LeaseHeld) when a live driver other than token ``mine`` holds study ``name``."""
    grace = lease_settings()[1] if grace is None else grace
    for c in claims(attrs):
        if c.token != mine and c.live(grace):
            raise LeaseHeld(
                f"study {name!r} is being run by driver {c.describe()}; "
                "wait for it to end or stop it first"
            )


def takeover_note(attrs: dict | None, name: str) -> str | None:
    """What ``hpo resume`` says when it takes over from a driver that died (None otherwise);
    LeaseHeld when a live driver holds the study (before anything is printed or opened)."""
    grace = lease_settings()[1]
    check(attrs, name, grace)
    dead = [c for c in claims(attrs) if not c.live(grace)]
    if not dead or any(c.live(grace) for c in claims(attrs)):
        return None
    return f"taking over study {name!r}: its driver {dead[-1].describe()} is gone"


class Lease:
    """Hold study ``name``'s lease while in the ``with`` block (a renewal thread)."""

    def __init__(self, storage, name: str):
        self.storage, self.name = storage, name
        self.interval, self.grace = lease_settings()
        now = time.time()
        self.claim = Claim(uuid.uuid4().hex[:16], worker_id(), now, now)
        self.key = PREFIX + self.claim.token
        self.stop = threading.Event()
        self.lost = False
        self.thread = threading.Thread(target=self._renew, name="hpo-lease", daemon=True)

    def __enter__(self) -> Lease:
        check(parent_attrs(self.storage, self.name), self.name, self.grace)
        self._write(asdict(self.claim))
        try:
            check(parent_attrs(self.storage, self.name), self.name, self.grace, self.claim.token)
        except LeaseHeld:
            self._write(None)  # a driver racing us wrote first: withdraw
            raise
        for c in claims(parent_attrs(self.storage, self.name)):
            if c.token != self.claim.token:  # dead ones (a live one refused above)
                self.storage.set_study_user_attr(self._sid(), PREFIX + c.token, None)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        with contextlib.suppress(Exception):  # a full disk, a lost server: it expires anyway
            self._write(None)

    def _sid(self) -> int:
        return self.storage.get_study_id_from_name(self.name)

    def _write(self, value: dict | None) -> None:
        if value is not None:
            value = {k: v for k, v in value.items() if k != "token"}
        self.storage.set_study_user_attr(self._sid(), self.key, value)

    def _renew(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                if not isinstance(parent_attrs(self.storage, self.name).get(self.key), dict):
                    self.lost = True  # taken over while we could not renew: stop claiming
                    return
                claim = asdict(self.claim) | {"renewed_at": time.time()}
                self._write(claim)
            except Exception:  # storage down or full: retried next interval
                continue


class Watch:
    """``hpo worker``: a thread that interrupts the main thread (as Ctrl-C does, so the trial in
    flight is recorded interrupted and replaced) once the study has claims but none is live."""

    def __init__(self, storage, name: str, poll: float = 1.0):
        self.storage, self.name, self.poll = storage, name, poll
        self.grace = lease_settings()[1]
        self.message: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="hpo-lease-watch", daemon=True)

    def __enter__(self) -> Watch:
        interruptible()  # `hpo worker ... &` from a script ignores SIGINT: _loop relies on it
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()

    def gone(self) -> str | None:
        """Why the study has no driver any more, or None while one holds it (or none has yet)."""
        attrs = parent_attrs(self.storage, self.name) or {}
        if attrs.get(ATTR["status"], "running") != "running":
            return None  # ended: the worker's own loop sees it and exits 0
        keys = [k for k in attrs if k.startswith(PREFIX)]
        live = [c for c in claims(attrs) if c.live(self.grace)]
        if not keys or live:
            return None
        last = claims(attrs)
        who = last[-1].describe() if last else "released its lease without ending the study"
        return (
            f"the driver of study {self.name!r} is gone ({who}; grace {self.grace:g} s); "
            f"exiting: `hpo resume {self.name}` restarts the study"
        )

    def _loop(self) -> None:
        while not self.stop.wait(self.poll):
            try:
                self.message = self.gone()
            except Exception:  # storage unreachable: look again
                continue
            if self.message:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                return
