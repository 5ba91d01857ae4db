"""``streamlit run`` with a fault: the server SIGKILLs itself at the N-th fsync of a file under
a chosen folder, i.e. in the middle of an atomic write (the temporary file is written, not yet
renamed). Used by test_serving_faults.py as ``python fault_server.py run app.py ...``.

    ASL_LENS_FAULT_DIR   the folder whose writes are counted (the library, or the cache)
    ASL_LENS_FAULT_AT    which fsync under it kills the process (1 = the first)
"""

from __future__ import annotations

import os
import signal
import sys


def _install() -> None:
    folder = os.path.realpath(os.environ["ASL_LENS_FAULT_DIR"])
    at = int(os.environ.get("ASL_LENS_FAULT_AT", "1"))
    real_fsync = os.fsync
    seen = {"n": 0}

    def fsync(fd):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if path.startswith(folder + os.sep):
            seen["n"] += 1
            if seen["n"] == at:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_fsync(fd)

    os.fsync = fsync


if __name__ == "__main__":
    _install()
    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    sys.exit(cli.main())
