"""``make dev``: the whole pipeline on this machine, with the same code that runs in AWS (docs/architecture.md D6).

It starts two moto servers on free loopback ports (S3, SQS and the rest on one, DynamoDB on its own), creates the
resources from the shared schema, starts the API (uvicorn), the pipe emulator and the scheduler emulator, then prints
how to use it and writes the same facts to ``.segscale/dev.json`` for scripts and the ``segscale`` CLI. Like ECS, it
restarts a crashed API, pipe or scheduler (with backoff, logged); if a moto server dies, every job dies with it, so the
stack stops with a message saying so (``local/supervisor.py``). Ctrl-C or SIGTERM stops everything. The
end-to-end tests start their stack with ``LocalStack`` too, so they test what users run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from local.events import (
    EventTap,
    LocalNotifications,
    NotifyEmulator,
    create_notifications,
    ingest_action,
    notify_action,
)
from local.inbox import create_inbox
from local.pipe import WORKER_COMMAND, PipeEmulator
from local.procs import REPO_ROOT, free_port, http_ok, spawn, stop, stop_all, wait_until
from local.resources import LocalResources, create_resources
from local.scheduler import Scheduler, reconcile_action
from local.supervisor import Piece, Supervisor
from local.webhooks import WebhookReceiver
from runtime.common.aws import client
from runtime.common.settings import Settings, env_name

STATE_DIR = REPO_ROOT / ".segscale"
# Settings CDK gives the worker and the results task but not the API (docs/architecture.md D9).
API_WITHHELD = frozenset({env_name("event_bus"), env_name("webhook_secret_arn")})
STATE_FILE_NAME = "dev.json"
BUS_EVENTS_FILE = "bus-events.jsonl"  # the EventBridge events (the emulators log their own events elsewhere)


@dataclass
class StackConfig:
    """Everything that varies between ``make dev``, the end-to-end tests and the benchmark."""

    prefix: str = "segscale"
    api_key: str | None = None  # None: a fresh random key
    api_port: int | None = None  # None: a free port
    moto_port: int | None = None
    # DynamoDB on a moto server of its own: one interpreter serves S3, SQS and the rest, another the table, so the
    # table's writes (one at a time, local/motoserver.py) do not wait behind image bytes for the GIL.
    dynamodb_server: bool = True
    max_workers: int = 2  # SEGSCALE_MAX_WORKERS: worker slots, so worker processes alive at once (D8)
    reconcile_interval_s: float = 30.0
    reconcile_enabled: bool = True
    # Extra settings for every container, by field name (``{"lease_seconds": "3"}`` -> SEGSCALE_LEASE_SECONDS).
    settings: Mapping[str, str] = field(default_factory=dict)
    worker_command: Sequence[str] = WORKER_COMMAND
    lose_launches: int = 0  # the pipe emulator drops this many wake messages (RunTask that starts no task)
    log_dir: Path | None = None  # moto, API and worker output; None: discard moto's, inherit the rest
    log: IO[str] | None = None  # where the emulators write their JSON event lines (None: stdout)
    startup_timeout_s: float = 60.0
    supervise: bool = True  # restart a crashed API, pipe or scheduler; stop on a dead moto (local/supervisor.py)


def settings_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """``SEGSCALE_*`` variables for the given settings; an unknown name fails here, not silently later."""
    return {env_name(name): str(value) for name, value in overrides.items()}


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """The ``Settings`` a container started with ``env`` would read (for code the stack runs in-process)."""
    # Strings, as in the environment: the fields' validators parse them (an int, a bool, a path) at run time.
    values: dict[str, Any] = {name: env[env_name(name)] for name in Settings.model_fields if env_name(name) in env}
    return Settings(**values)


def sample_photo(state_dir: Path) -> Path:
    """A real portrait (matplotlib's Grace Hopper) for the curl example, copied where users can find it."""
    import matplotlib

    target = state_dir / "sample.jpg"
    if not target.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg", target)
    return target


def _output(log_dir: Path | None, name: str, default: int | None) -> IO[Any] | int | None:
    if log_dir is None:
        return default
    log_dir.mkdir(parents=True, exist_ok=True)
    return (log_dir / name).open("ab")


def _start_ready(
    argv: list[str],
    ready_url: str,
    *,
    what: str,
    out: IO[Any] | int | None,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server and wait until ``ready_url`` answers; one that never does is stopped, not left behind."""
    proc = spawn(argv, env=env, stdout=out, stderr=out)
    try:
        wait_until(lambda: proc.poll() is None and http_ok(ready_url), timeout_s=timeout_s, what=what)
    except TimeoutError:
        stop(proc)
        raise
    return proc


def start_moto(
    port: int, *, log_dir: Path | None, timeout_s: float, log_name: str = "moto.log"
) -> subprocess.Popen[bytes]:
    return _start_ready(
        [sys.executable, "-m", "local.motoserver", "-H", "127.0.0.1", "-p", str(port)],
        f"http://127.0.0.1:{port}/moto-api/",
        what=f"the moto server on port {port}",
        out=_output(log_dir, log_name, subprocess.DEVNULL),
        timeout_s=timeout_s,
    )


def start_api(port: int, env: Mapping[str, str], *, log_dir: Path | None, timeout_s: float) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "uvicorn", "runtime.api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    return _start_ready(
        [*argv, "--no-access-log", "--log-level", "warning"],
        f"http://127.0.0.1:{port}/healthz",
        what=f"the API on port {port} (see its log)",
        out=_output(log_dir, "api.log", None),
        timeout_s=timeout_s,
        env=env,
    )


class LocalStack:
    """moto servers + resources + API + pipe emulator + scheduler emulator, started and stopped as one."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.api_key = self.config.api_key or secrets.token_urlsafe(24)
        self.moto_proc: subprocess.Popen[bytes] | None = None
        self.dynamodb_proc: subprocess.Popen[bytes] | None = None  # DynamoDB's own moto server (dynamodb_server)
        self.api_proc: subprocess.Popen[bytes] | None = None
        self.resources: LocalResources | None = None
        self.pipe: PipeEmulator | None = None
        self.scheduler: Scheduler | None = None
        self.notifications: LocalNotifications | None = None
        self.events: EventTap | None = None
        self.notifier: NotifyEmulator | None = None
        self.ingester: NotifyEmulator | None = None
        self.inbox_queue_url: str | None = None
        self.webhooks: WebhookReceiver | None = None
        self.supervisor: Supervisor | None = None
        self.retired: list[subprocess.Popen[bytes]] = []  # API processes replaced by a restart
        self._api_lock = threading.Lock()  # one (re)start of the API at a time: the supervisor's or a caller's
        self.api_port = self.config.api_port or free_port()
        self.moto_port = self.config.moto_port or free_port()
        self.dynamodb_port = free_port() if self.config.dynamodb_server else None

    # --- the pieces --------------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def dynamodb_url(self) -> str:
        """Where the table is: DynamoDB's own moto server, or the one moto server."""
        return f"http://127.0.0.1:{self.dynamodb_port}" if self.dynamodb_port else self.moto_url

    @property
    def runtime_env(self) -> dict[str, str]:
        """What the task definitions give every container (the worker gets exactly this plus JOB_BATCH)."""
        if self.resources is None:
            raise RuntimeError("the stack is not started")
        fleet = settings_env({"max_workers": str(self.config.max_workers)})
        notifications = self.notifications.env() if self.notifications is not None else {}
        if self.inbox_queue_url is not None:
            notifications[env_name("inbox_queue_url")] = self.inbox_queue_url
        return {**self.resources.env(), **notifications, **fleet, **settings_env(self.config.settings)}

    @property
    def api_env(self) -> dict[str, str]:
        """As in AWS, the API gets neither the event bus nor the webhook signing secret."""
        env = {k: v for k, v in self.runtime_env.items() if k not in API_WITHHELD}
        if self.notifications is not None:  # the bus the API starts the ingester through, as in AWS (D10)
            env[env_name("ingest_bus")] = self.notifications.bus
        return {**env, env_name("api_key"): self.api_key}

    @property
    def settings(self) -> Settings:
        return settings_from_env(self.runtime_env)

    def start(self) -> LocalStack:
        cfg = self.config
        # The emulators and reconcile run in this process and talk to moto, which accepts any credentials.
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
            os.environ.setdefault(name, value)
        try:
            self.moto_proc = start_moto(self.moto_port, log_dir=cfg.log_dir, timeout_s=cfg.startup_timeout_s)
            if self.dynamodb_port is not None:
                self.dynamodb_proc = start_moto(
                    self.dynamodb_port,
                    log_dir=cfg.log_dir,
                    timeout_s=cfg.startup_timeout_s,
                    log_name="moto-dynamodb.log",
                )
            self.resources = create_resources(
                self.moto_url,
                prefix=cfg.prefix,
                dynamodb_endpoint_url=self.dynamodb_url if self.dynamodb_port else None,
            )
            self.notifications = create_notifications(self.moto_url, prefix=cfg.prefix)
            self.inbox_queue_url = create_inbox(self.resources.settings())  # the drop folder, inbox/<name>/
            self.start_api()
            settings = self.settings
            self._start_notifications(settings)
            self.pipe = PipeEmulator(
                sqs_client=client("sqs", settings),
                queue_url=self.resources.wake_queue_url,
                env=self.runtime_env,
                command=cfg.worker_command,
                log_dir=cfg.log_dir,
                log=cfg.log,
                lose_launches=cfg.lose_launches,
            ).start()
            self.scheduler = Scheduler(
                reconcile_action(settings),
                interval_s=cfg.reconcile_interval_s,
                log=cfg.log,
                quiet_when=_nothing_done,
            )
            if cfg.reconcile_enabled:
                self.scheduler.start()
            if cfg.supervise:
                self.supervisor = Supervisor(self._supervised(), log=cfg.log).start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_notifications(self, settings: Settings) -> None:
        """The bus's tap and notify rule (local/events.py) and a webhook receiver that checks signatures."""
        assert self.notifications is not None
        cfg, sqs = self.config, client("sqs", settings)
        log_file = (lambda name: cfg.log_dir / name) if cfg.log_dir is not None else (lambda name: None)
        secret = client("secretsmanager", settings).get_secret_value(SecretId=self.notifications.secret_arn)
        self.events = EventTap(sqs, self.notifications.tap_queue_url, path=log_file(BUS_EVENTS_FILE), log=cfg.log)
        self.notifier = NotifyEmulator(sqs, self.notifications.notify_queue_url, notify_action(settings), log=cfg.log)
        self.ingester = NotifyEmulator(
            sqs, self.notifications.ingest_queue_url, ingest_action(settings), log=cfg.log, name="ingest"
        )
        self.webhooks = WebhookReceiver(secret=secret["SecretString"], path=log_file("webhooks.jsonl"), log=cfg.log)
        self.events.start()
        self.notifier.start()
        self.ingester.start()
        self.webhooks.start()

    def _supervised(self) -> list[Piece]:
        """What ECS would replace (the API task, the pipe, the schedule), and moto, whose loss ends the stack."""
        assert self.moto_proc is not None and self.pipe is not None and self.scheduler is not None
        pipe, scheduler = self.pipe, self.scheduler
        log_dir, own_table = self.config.log_dir, self.dynamodb_proc is not None
        held = "bucket and queues" if own_table else "bucket, table and queues"
        pieces = [_moto_piece("moto", self.moto_proc, held, "moto.log", log_dir)]
        if self.dynamodb_proc is not None:
            pieces.append(_moto_piece("moto-dynamodb", self.dynamodb_proc, "tables", "moto-dynamodb.log", log_dir))
        pieces += [
            Piece("api", alive=self._api_alive, restart=self.restart_api, exit_info=self._api_exit),
            Piece("pipe", alive=lambda: _thread_alive(pipe), restart=pipe.start),
        ]
        if self.config.reconcile_enabled:
            pieces.append(Piece("scheduler", alive=lambda: _thread_alive(scheduler), restart=scheduler.start))
        return pieces

    def _api_alive(self) -> bool:
        return self.api_proc is not None and self.api_proc.poll() is None

    def _api_exit(self) -> dict[str, Any]:
        proc = self.api_proc
        return {"pid": proc.pid, "returncode": proc.returncode} if proc is not None else {}

    def start_api(self) -> None:
        """Start (or start again, after a kill) the API on the stack's port."""
        with self._api_lock:
            self._replace_api()

    def restart_api(self) -> None:
        """The supervisor's restart: only if the API is still down (a caller may have restarted it already)."""
        with self._api_lock:
            if not self._api_alive():
                self._replace_api()

    def _replace_api(self) -> None:
        if self.api_proc is not None:
            stop(self.api_proc)
            self.retired.append(self.api_proc)
        self.api_proc = start_api(
            self.api_port, self.api_env, log_dir=self.config.log_dir, timeout_s=self.config.startup_timeout_s
        )

    def kill_api(self) -> None:
        """SIGKILL the API: its in-memory micro-batch buffer is lost, as when a Fargate task dies."""
        if self.api_proc is not None:
            self.api_proc.kill()
            self.api_proc.wait()

    def stop(self) -> None:
        """Stop in the reverse order of start; safe to call twice or after a failed start.

        The scheduler, the pipe and the notify emulator stop side by side (each may be in the middle of an AWS
        call). Once a moto server is gone nothing can finish its work properly, so the API and the workers get no
        grace period then: a graceful stop would only wait for retries against a dead endpoint."""
        if self.supervisor is not None:
            self.supervisor.stop()  # nothing is restarted from now on
        moto_gone = any(p is not None and p.poll() is not None for p in (self.moto_proc, self.dynamodb_proc))
        grace_s = 1.0 if moto_gone else 10.0
        if moto_gone and self.pipe is not None:
            stop_all([launch.proc for launch in self.pipe.running()], timeout_s=grace_s)
        stopping = [
            threading.Thread(target=e.stop)
            for e in (self.scheduler, self.pipe, self.notifier, self.ingester)
            if e is not None
        ]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        for part in (self.events, self.webhooks):  # after the notifier: it may be delivering to the receiver
            if part is not None:
                part.stop()
        for proc in (self.api_proc, self.moto_proc, self.dynamodb_proc):
            if proc is not None:
                stop(proc, timeout_s=grace_s)
        if self.supervisor is not None:
            self.supervisor.release()  # its thread may end now: what it started is stopped

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def info(self) -> dict[str, Any]:
        """What ``.segscale/dev.json`` holds: enough for the CLI, curl and boto3 scripts."""
        if self.resources is None:
            raise RuntimeError("the stack is not started")
        return {
            "endpoint": self.api_url,
            "api_key": self.api_key,
            "aws_endpoint_url": self.moto_url,
            "dynamodb_endpoint_url": self.dynamodb_url,
            "region": self.resources.region,
            "bucket": self.resources.bucket,
            "table": self.resources.table,
            "queue_url": self.resources.queue_url,
            "dlq_url": self.resources.dlq_url,
            "wake_queue_url": self.resources.wake_queue_url,
            "event_bus": self.notifications.bus if self.notifications else None,
            "webhook_url": self.webhooks.url if self.webhooks else None,
            "events_log": str(self.config.log_dir / BUS_EVENTS_FILE) if self.config.log_dir else None,
            "webhooks_log": str(self.config.log_dir / "webhooks.jsonl") if self.config.log_dir else None,
            "pid": os.getpid(),
            "child_pids": {
                "moto": self.moto_proc.pid if self.moto_proc else None,
                "moto_dynamodb": self.dynamodb_proc.pid if self.dynamodb_proc else None,
                "api": self.api_proc.pid if self.api_proc else None,
            },
        }


def _moto_piece(name: str, proc: subprocess.Popen[bytes], held: str, log_name: str, log_dir: Path | None) -> Piece:
    """A moto server is never restarted: it held state in memory, so its loss ends the stack with a message."""
    return Piece(
        name,
        alive=lambda: proc.poll() is None,
        restart=None,
        exit_info=lambda: {"pid": proc.pid, "returncode": proc.returncode},
        fatal_message=f"the moto server (pid {proc.pid}) exited: it held this stack's {held} in memory, so every "
        "job and image in them is gone; stopping everything" + (f" (its log: {log_dir / log_name})" if log_dir else ""),
    )


def _thread_alive(emulator: Any) -> bool:
    """An emulator runs on one thread (``_thread``); it is alive until that thread ends."""
    thread = getattr(emulator, "_thread", None)
    return thread is not None and thread.is_alive()


def _nothing_done(result: Any) -> bool:
    """Quiet the reconcile log when a run touched no job: every list in its report is empty."""
    import dataclasses

    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = dataclasses.asdict(result)
    if not isinstance(result, dict):
        return False

    def empty(value: Any) -> bool:
        if isinstance(value, dict):
            return all(empty(v) for v in value.values())
        if isinstance(value, list):
            return not value
        return True

    return empty(result)


def write_state(info: Mapping[str, Any], state_dir: Path = STATE_DIR) -> Path:
    """Write the state file readable by this user only (it holds the API key)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def banner(stack: LocalStack, state_path: Path, photo: Path) -> str:
    url, key = stack.api_url, stack.api_key
    info = stack.info()
    bus, hook = info["event_bus"], info["webhook_url"]
    events_log, webhooks_log = info["events_log"], info["webhooks_log"]
    return f"""
segscale is running locally.

  console    {url}/   (open it in a browser and paste the API key)
  API        {url}   (docs: {url}/docs)
  API key    {key}
  state      {state_path}   (endpoint, key, bucket, table, queue as JSON)
  logs       {stack.config.log_dir}

Try it (a portrait, matplotlib's Grace Hopper photo):

  curl -s -F file=@{photo} -H "X-Api-Key: {key}" {url}/v1/images
  curl -s -H "X-Api-Key: {key}" {url}/v1/jobs/<job_id>

or with the CLI (it reads {state_path} by default):

  bin/segscale upload {photo}
  bin/segscale wait <batch_id>
  bin/segscale results <batch_id> --out results.csv

A key per client (docs/api.md): the key above is the admin key; give each client its own, printed once:

  bin/segscale admin keys create <client-name>
  bin/segscale admin keys list

Notifications (docs/notifications.md): events on the moto EventBridge bus {bus}, and a local webhook
receiver that checks each delivery's signature:

  bin/segscale upload --notify-url {hook} {photo}
  tail -f {events_log} {webhooks_log}

Ctrl-C stops everything.
"""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.dev", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("SEGSCALE_DEV_PORT", "0")) or None)
    parser.add_argument(
        "--workers",
        type=_positive,
        default=int(os.environ.get("SEGSCALE_DEV_WORKERS", "0")) or 2,
        help="max_workers: worker processes alive at once (default 2; `make dev WORKERS=N`)",
    )
    parser.add_argument("--reconcile-every", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR)
    args = parser.parse_args(argv)

    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    config = StackConfig(
        api_port=args.port,
        max_workers=args.workers,
        reconcile_interval_s=args.reconcile_every,
        log_dir=args.state_dir / "logs",
    )
    stack = LocalStack(config)
    try:
        print("starting the moto server, the API, the pipe and the scheduler emulators ...", flush=True)
        stack.start()
        info = stack.info()
        state_path = write_state(info, args.state_dir)
        print(banner(stack, state_path, sample_photo(args.state_dir)), flush=True)
        while not stop_requested.wait(0.5):
            if stack.supervisor is not None and stack.supervisor.failed.is_set():
                print(f"\nsegscale stopped: {stack.supervisor.failure}.", file=sys.stderr, flush=True)
                return 1
            if stack.info() != info:  # a restarted API has a new pid
                info = stack.info()
                write_state(info, args.state_dir)
        return 0
    finally:
        print("stopping ...", flush=True)
        stack.stop()
        (args.state_dir / STATE_FILE_NAME).unlink(missing_ok=True)
        print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
