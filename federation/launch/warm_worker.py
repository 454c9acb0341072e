"""A long-lived ClientApp executor for one hospital's SuperNode (`flower-supernode --isolation
process`): the same Flower Runtime API steps `flower-superexec` + `flwr-clientapp` take for each
message (acquire the task, pull its message and context, run the ClientApp, push the reply and
the context), but in one process that imports torch, Flower and the app once.

Why: Flower 1.42 starts a new `flwr-clientapp` process for every message, and SecAgg+ sends four
messages per hospital per round; that process start (Flower's imports, torch for the training
stage) is most of a round's time (benchmarks/bench_federation.py). The ClientApp, its mods
(SecAgg+, the hospital's guards) and the message flow are Flower's, unchanged. Opt-in:
`python -m federation up ... --warm-worker` (or `--fast`). With `--doorbell` the SuperNode rings
when a message is ready (doorbell.py) and the worker's own polls are only a fallback.

    python -m federation.launch.warm_worker 127.0.0.1:9094 [--poll 0.05] [--doorbell PORT]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

log = logging.getLogger("dopamine.warm_worker")
FALLBACK_POLL = 2.0   # seconds between polls when the SuperNode rings a doorbell (doorbell.py)


def serve(runtime_address: str, *, poll: float = 0.05, parent_pid: int | None = None,
          doorbell: int | None = None, clientapp: str = "federation.client_app:app") -> None:
    """Acquire and run ClientApp tasks from the SuperNode at `runtime_address`, forever."""
    from flwr.common.constant import SubStatus
    from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
    from flwr.supercore.app_utils import start_parent_process_monitor
    from flwr.supercore.constant import TaskType
    from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
    from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

    import importlib
    module_name, _, attribute = clientapp.partition(":")
    app = getattr(importlib.import_module(module_name), attribute)
    import federation.task  # noqa: F401  (torch and the trainer, once)

    if parent_pid is not None:
        start_parent_process_monitor(parent_pid)

    def client(*interceptors):
        return RuntimeHttpClient.from_server_address(
            server_address=runtime_address, insecure=True, root_certificates=None,
            interceptors=list(interceptors), retry_invoker=make_simple_http_retry_invoker())

    from federation.launch.doorbell import Doorbell
    from federation.launch.polling import BackoffClock, fast_object_pulls
    fast_object_pulls(poll)
    clock = BackoffClock(poll)   # fast right after a task (SecAgg+'s next stage follows), slow when idle
    bell = Doorbell(doorbell) if doorbell is not None else None
    acquirer = client(RuntimeVersionHttpInterceptor(component_name="SuperExec"))
    request = AcquireTaskRequest(supported_task_types=[str(TaskType.CLIENT_APP)], agentapp_fab_hashes=[])
    while True:
        res = acquirer.AcquireTask(request)
        if not (res.HasField("task") and res.token):
            if bell is None:
                clock.sleep()
            else:            # a ring wakes us at once; polling is only the fallback
                bell.wait(FALLBACK_POLL)
            continue
        task = client(RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
                      RuntimeTokenHttpInterceptor(res.token))
        started = time.perf_counter()
        context, status, details = None, SubStatus.FAILED, "ClientApp task failed"
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(task))
        heartbeat.start()
        try:
            message, context, _run, _fab = pull_task_input(task)
            reply = app(message=message, context=context)
            push_message(task, reply, context)
            status, details = SubStatus.COMPLETED, ""
        except Exception as exc:  # one task fails; the worker (and the hospital) stays up
            log.error("task failed: %s", exc)
            details = f"{type(exc).__name__}: {exc}"
        finally:
            push_task_output(client=task, context=context, sub_status=status, details=details)
            if heartbeat.is_running:
                heartbeat.stop()
            task.close()
            clock.activity()
            log.info("task %s %s in %.3f s", res.task.task_id, status, time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m federation.launch.warm_worker", description=__doc__.splitlines()[0])
    parser.add_argument("runtime_address", help="the SuperNode's Runtime API, host:port (its --host/--port)")
    parser.add_argument("--poll", type=float, default=0.05, help="first poll interval after a task (grows while idle)")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process exits")
    parser.add_argument("--doorbell", type=int, default=None,
                        help="UDP port on 127.0.0.1 the SuperNode rings on a new message (doorbell.py)")
    parser.add_argument("--clientapp", default="federation.client_app:app",
                        help="module:attribute of the ClientApp (default: the product's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)   # one line per poll otherwise
    try:
        serve(args.runtime_address, poll=args.poll, parent_pid=args.parent_pid, doorbell=args.doorbell,
              clientapp=args.clientapp)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:   # e.g. the doorbell port is taken: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
