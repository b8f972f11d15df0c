"""Process exit codes: the contract with systemd and with operators' scripts.

Codes that mean "restarting will not help" are listed in the unit's
RestartPreventExitStatus= (see systemd/mxarchiverd.service). The values follow
sysexits(3) where one fits, so they read the same in `systemctl status`.
"""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    # An unexpected exception: a bug or an environment problem; systemd restarts us.
    CRASH = 1
    # Bad command line (argparse uses 2 as well).
    USAGE = 2
    # The supervisor restarted children too often in too short a time and gave up,
    # so that systemd restarts the whole unit after RestartSec=.
    RESTART_LIMIT = 3
    # verify found differences between the source and the archive (with --repair:
    # some that repair cannot fix).
    VERIFY_MISMATCH = 4
    # verify found nothing left to fix, but the archive is not settled yet: --repair
    # queued what it found, or media jobs are still uploading. Run verify again later.
    VERIFY_UNSETTLED = 5
    # A pipeline stage found that another daemon has taken over the lease (daemon.ha):
    # a child's code only, never the supervisor's; the supervisor stands by.
    FENCED = 75
    # The archive schema is newer than this code, or not migrated yet.
    SCHEMA_MISMATCH = 65
    # A database needed at start stayed unreachable past the start-up grace period.
    # Not listed in RestartPreventExitStatus=: a database that comes back later
    # must not leave the archiver stopped.
    UNAVAILABLE = 69
    # The archive role lacks a privilege it needs (it does not own the tables a migration
    # alters, or may not create in the schema): an operator must grant it (sysexits EX_NOPERM).
    PERMISSION = 77
    # The configuration is invalid; every problem has been printed with its key path.
    CONFIG = 78


class BootError(Exception):
    """A stage cannot start, and restarting it will not help until something changes.

    Raised by a stage's open() (or a source's); the child exits with `exit_code`,
    which the supervisor passes on when the stage never came up (supervisor/children.py).
    """

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.UNAVAILABLE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
