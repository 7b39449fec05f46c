"""Start and stop the local stack: Debian's influxd and mosquitto on loopback, the simulator and the twin.

One module serves two callers: ``make run`` (``python -m deploy.localstack``) and the test fixtures, which start
real servers on free ports in temporary directories and kill / restart them to make faults real. Each server is a
``ManagedProcess``: ``start()`` waits until its port answers, ``stop()`` terminates it (SIGTERM, then SIGKILL),
``kill()`` is the SIGKILL a crash looks like, ``restart()`` starts it again on the same port and data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = LOOPBACK, timeout_s: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
        return True
    return False


def find_binary(name: str, extra_dirs: Sequence[str] = ("/usr/sbin", "/usr/bin", "/usr/local/sbin")) -> str:
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        candidate = Path(d) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise FileNotFoundError(f"{name} not found; run `make deps` (it installs Debian's package) or put it on PATH")


class ManagedProcess:
    """A server process we own: started on a known port, with its output in ``data_dir/<name>.log``."""

    name = "process"
    start_timeout_s = 30.0

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.host = LOOPBACK
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- to be provided by subclasses -------------------------------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files; called before every start."""

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> ManagedProcess:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if port_open(self.port):
            raise RuntimeError(f"{self.name}: port {self.port} is already in use; choose another port")
        self.prepare()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our own binaries and arguments
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=self.env(), cwd=str(REPO),
            start_new_session=True,
        )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + self.tail())
            if self.ready():
                return
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"{self.name} did not become ready on port {self.port} in {self.start_timeout_s} s; "
                           f"see {self.log_path}:\n" + self.tail())

    def ready(self) -> bool:
        return port_open(self.port)

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=timeout_s)
        self._close()

    def kill(self) -> None:
        """SIGKILL, as a crash or power cut would: no clean shutdown."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._close()

    def restart(self) -> ManagedProcess:
        self.stop()
        # the port must be free again before we bind it (TIME_WAIT does not block a listening socket here)
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start()

    def _close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Influxd(ManagedProcess):
    """Debian's InfluxDB 1.x (``/write`` and ``/query`` on HTTP)."""

    name = "influxd"

    def __init__(self, data_dir: Path, port: int | None = None, rpc_port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self.rpc_port = rpc_port or free_port()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "influxdb.conf"

    def prepare(self) -> None:
        d = self.data_dir
        self.config_path.write_text(
            f"""reporting-disabled = true
bind-address = "{LOOPBACK}:{self.rpc_port}"
[meta]
  dir = "{d / 'meta'}"
  logging-enabled = false
[data]
  dir = "{d / 'data'}"
  wal-dir = "{d / 'wal'}"
  query-log-enabled = false
  wal-fsync-delay = "0s"
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "{LOOPBACK}:{self.port}"
  auth-enabled = false
  log-enabled = false
  max-body-size = 0
[logging]
  level = "warn"
  suppress-logo = true
[continuous_queries]
  enabled = false
"""
        )

    def command(self) -> list[str]:
        return [find_binary("influxd"), "-config", str(self.config_path)]

    def ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=0.5) as resp:  # noqa: S310 - loopback
                return resp.status == 204
        except OSError:
            return False


class VictoriaMetrics(ManagedProcess):
    """Debian's VictoriaMetrics: speaks InfluxDB's ``/api/v2/write``, so the v2 write path meets a real server."""

    name = "victoria-metrics"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            find_binary("victoria-metrics"), f"-httpListenAddr={LOOPBACK}:{self.port}",
            f"-storageDataPath={self.data_dir / 'data'}", "-retentionPeriod=100y", "-search.disableCache",
        ]

    def ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as resp:  # noqa: S310 - loopback
                return resp.status == 200
        except OSError:
            return False


class Mosquitto(ManagedProcess):
    """Debian's Mosquitto 2 on loopback with persistence, so QoS 1 sessions survive a broker restart (``stop``'s
    SIGTERM makes it save its persistence file, as a clean broker restart does; ``kill`` does not)."""

    name = "mosquitto"

    def __init__(self, data_dir: Path, port: int | None = None, extra_config: str = "") -> None:
        super().__init__(data_dir, port)
        self.extra_config = extra_config

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    def prepare(self) -> None:
        (self.data_dir / "persist").mkdir(parents=True, exist_ok=True)
        # Started as root, mosquitto drops to the `mosquitto` user, which cannot write our data dir: keep the user.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.config_path.write_text(
            f"""{user}listener {self.port} {LOOPBACK}
allow_anonymous true
persistence true
persistence_location {self.data_dir / 'persist'}/
autosave_interval 1
max_queued_messages 1000000
max_inflight_messages 100
log_dest stdout
log_type error
log_type warning
{self.extra_config}
"""
        )

    def command(self) -> list[str]:
        return [find_binary("mosquitto"), "-c", str(self.config_path)]


class PythonService(ManagedProcess):
    """A project service run as ``python -m <module> ...`` with this interpreter."""

    def __init__(self, data_dir: Path, port: int | None = None, args: Sequence[str] = ()) -> None:
        super().__init__(data_dir, port)
        self.args = list(args)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")
        env["PYTHONUNBUFFERED"] = "1"
        return env


class Simulator(PythonService):
    """The bundled line simulator (``python -m simulator``)."""

    name = "simulator"
    start_timeout_s = 60.0

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "simulator", "--host", LOOPBACK, "--port", str(self.port),
                "--data-dir", str(self.data_dir), *self.args]


class Twin(PythonService):
    """The twin service (``python -m twin run``); ``port`` is its HTTP port."""

    name = "twin"
    start_timeout_s = 90.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "twin", "run", *self.args]


# ------------------------------------------------------------------------------------------------------------------
# make run
# ------------------------------------------------------------------------------------------------------------------


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@contextlib.contextmanager
def running(*services: ManagedProcess) -> Iterator[None]:
    """Start in order, stop in reverse order whatever happens."""
    started: list[ManagedProcess] = []
    try:
        for s in services:
            s.start()
            started.append(s)
        yield
    finally:
        for s in reversed(started):
            with contextlib.suppress(Exception):
                s.stop()


def local_engineer_token(token_file: Path, plain_file: Path) -> str:
    """A loopback demo needs one engineer login: created once, its hash in the twin's token store, the token itself
    in a 0600 file beside it (as the simulator keeps its operator password), printed at every start."""
    from twin.auth import TokenStore

    if plain_file.is_file():
        return plain_file.read_text().strip()
    store = TokenStore(token_file)
    store.revoke("local-engineer")  # a stored hash whose token file is gone can never be used again
    token = store.create("engineer", "local-engineer")
    plain_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(plain_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def main() -> int:
    var = Path(os.environ.get("PILOTLINE_VAR", REPO / "var")).resolve()
    influx = Influxd(var / "influxdb", _env_port("PILOTLINE_INFLUX_PORT", 8086))
    mqtt = Mosquitto(var / "mosquitto", _env_port("PILOTLINE_MQTT_PORT", 1883))
    opcua_port = _env_port("PILOTLINE_OPCUA_PORT", 4840)
    http_port = _env_port("PILOTLINE_HTTP_PORT", 8000)
    speed = os.environ.get("PILOTLINE_SPEED", "1")
    scenario = os.environ.get("PILOTLINE_SCENARIO", str(REPO / "simulator" / "scenarios" / "nominal.yaml"))
    warmup = os.environ.get("PILOTLINE_WARMUP", "1800")  # simulated seconds run at full speed before pacing
    sim_args = ["--speed", speed, "--warmup", warmup, "--mqtt-url", mqtt.url, "--security", "none,sign,sign-encrypt"]
    if Path(scenario).is_file():
        sim_args += ["--scenario", scenario]
    sim = Simulator(var / "simulator", opcua_port, sim_args)
    services: list[ManagedProcess] = [influx, mqtt]
    # PILOTLINE_LINE=line.yaml: the twin serves that line (its servers, broker and users are in the file) and the
    # simulator does not start; without it, the bundled simulator's line (deploy/lines/simulator.yaml)
    own_line = os.environ.get("PILOTLINE_LINE", "")
    if own_line and not Path(own_line).is_file():
        print(f"PILOTLINE_LINE={own_line}: no such file", file=sys.stderr)
        return 2
    twin_config = REPO / "deploy" / "local" / "twin.yaml"
    twin: Twin | None = None
    token = ""
    if (REPO / "twin" / "service.py").is_file() and twin_config.is_file():
        from simulator.users import default_users

        # The simulator reuses DATA_DIR/operator-password; creating it here lets the twin start first and log in
        # with it to write setpoints once the line is up.
        default_users(sim.data_dir)
        twin_dir = var / "twin"
        token_file = twin_dir / "tokens.json"
        token = local_engineer_token(token_file, twin_dir / "engineer-token")
        password = [] if own_line else ["--opcua-password-file", str(sim.data_dir / "operator-password")]
        twin = Twin(twin_dir, http_port, ["--config", str(twin_config), *password])
        if own_line:
            os.environ["PILOTLINE__LINE__DESCRIPTION"] = str(Path(own_line).resolve())
        else:
            os.environ.update({
                "PILOTLINE__MQTT__URL": mqtt.url, "PILOTLINE__OPCUA__ENDPOINT": sim.endpoint,
                # the simulator's operator may write setpoints (password from --opcua-password-file)
                "PILOTLINE__OPCUA__AUTH_METHOD": "username", "PILOTLINE__OPCUA__USERNAME": "operator",
                # a value waits up to one publishing interval in the server before the twin sees it; 20 ms keeps a
                # gauge sample's way to a recommendation under 50 ms end to end (the default, 100 ms, suits bulk
                # monitoring)
                "PILOTLINE__OPCUA__SUBSCRIPTION_INTERVAL_MS": "20",
            })
        os.environ.update({
            "PILOTLINE__INFLUX__URL": influx.url,
            "PILOTLINE__SERVICE__HTTP__PORT": str(http_port),
            "PILOTLINE__SPOOL__DIR": str(twin_dir / "spool"),
            "PILOTLINE__QUARANTINE__DIR": str(twin_dir / "quarantine"),
            "PILOTLINE__SERVICE__AUTH__TOKEN_FILE": str(token_file),
            "PILOTLINE__SERVICE__GENEALOGY__STORE_PATH": str(twin_dir / "genealogy"),
        })
        # The twin starts before the line: its persistent MQTT session must exist before the first trace event
        # (raw-material lots, the first slurry batch), or the genealogy would miss the roots of everything after.
        services.append(twin)
    if not own_line:
        services.append(sim)
    stop = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_signal)
    try:
        with running(*services):
            print("\nPilot-line digital twin: local stack is up", flush=True)
            print(f"  InfluxDB 1.x   {influx.url}   (database data in {influx.data_dir})")
            print(f"  Mosquitto      {mqtt.url}   (persistence in {mqtt.data_dir})")
            if own_line:
                print(f"  Line           {own_line}   (its servers and broker, as the description says)")
            else:
                print(f"  OPC UA line    {sim.endpoint}   (simulator, speed x{speed}, log {sim.log_path})")
                print(f"                 operator password in {sim.data_dir / 'operator-password'}")
            if twin is not None:
                print(f"  Twin           {twin.url}   dashboard: {twin.url}/   API docs: {twin.url}/docs")
                print(f"                 engineer token (paste it into the dashboard): {token}")
                print(f"                 (kept in {var / 'twin' / 'engineer-token'}; "
                      "more: python -m twin token create)")
            print("Ctrl-C stops everything.", flush=True)
            while not stop:
                for s in services:
                    if not s.running:
                        print(f"{s.name} exited unexpectedly; last log lines:\n{s.tail()}", file=sys.stderr)
                        return 1
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    print("stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
