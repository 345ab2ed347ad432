"""Beam's Python job server for the one-machine cluster (`local_cluster`), with a dead SDK harness failing
its bundle instead of stalling the job.

    python -m featurebridge.pipelines.job_server --port=8099 --staging_dir=DIR

Beam's Python job server runs jobs with the FnApiRunner. For a Docker worker it
aborts the pending instructions when the container stops
(``DockerSdkWorkerHandler.watch_container``); for an EXTERNAL worker (a worker
pool, what these tests use) nothing does: when the harness dies,
``ControlConnection._read`` just ends, and a bundle whose harness died after
its last data element (or one with no data outputs) waits on its
ProcessBundle response forever. Seen here: a portable job whose worker pool was
SIGKILLed 3 s into the job hung with the runner thread in
``BundleManager.process_bundle -> ControlFuture.get``; killed at 0-2 s, it
failed cleanly. Flink's and Spark's runners fail the task when the harness
disconnects; this gives the one-machine cluster the same behaviour, so the
worker-death test checks featurebridge, not that gap in Beam.

Nothing else changes: the job server is Beam's ``local_job_service_main``.
"""

import logging
import signal
import sys

from apache_beam.runners.portability import local_job_service_main
from apache_beam.runners.portability.fn_api_runner import worker_handlers


class _FailOnDisconnectControlConnection(worker_handlers.ControlConnection):
    """A ControlConnection that aborts pending and later instructions once the
    harness's control stream has ended."""

    _disconnected = None  # the error to abort with, once the stream has ended

    def _read(self):
        reason = "ended its control stream"
        try:
            super()._read()
        except Exception as e:  # noqa: BLE001 - the stream broke: the harness is gone
            reason = f"broke its control stream ({type(e).__name__})"
        finally:
            error = RuntimeError(
                f"The SDK harness {reason} while the runner was waiting on it: the worker "
                "died or was killed. See the worker pool's log."
            )
            self._disconnected = error
            for future in list(self._futures_by_id.values()):
                future.abort(error)

    def push(self, req):
        future = super().push(req)
        # Checked after the future is registered, so _read's abort loop or this
        # check (or both) sees it.
        if future is not None and self._disconnected is not None:
            future.abort(self._disconnected)
        return future


def main(argv):
    worker_handlers.ControlConnection = _FailOnDisconnectControlConnection
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(0))
    logging.basicConfig()
    logging.getLogger().setLevel(logging.INFO)
    local_job_service_main.run(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
