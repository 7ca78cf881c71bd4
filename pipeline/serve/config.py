"""The service's options: one frozen dataclass, as every stage has."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pipeline.core.config import ConfigError, field

TOKEN_ENV = "DEEPFAKE_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; any other name or address may be reachable from elsewhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeConfig:
    host: str = field("127.0.0.1", "address to listen on; anything but loopback needs a token")
    port: int = field(8000, "TCP port")
    token: str = field("", f"bearer token every API call must carry (better: the {TOKEN_ENV} environment "
                       "variable, which other users cannot see in the process list)", cli=False)
    max_upload_mb: float = field(500.0, "largest upload accepted, in MB (10^6 bytes); larger ones get 413")
    queue: int = field(16, "jobs that may wait; when that many wait, uploads get 503 with Retry-After")
    batch: int = field(4, "waiting jobs the worker takes at once into one batched pass")
    keep_minutes: float = field(60.0, "minutes a finished job's result, picture and upload are kept, then deleted")
    explain: bool = field(True, "draw each video's Grad-CAM + attention picture (costs about one more backbone "
                          "pass with gradients per video)")
    cors_origins: tuple[str, ...] = field((), "browser origins allowed to call the API (comma-separated, e.g. "
                                          "https://moderation.example.org); none: CORS off")
    device: str = field("auto", "auto | cpu | cuda | cuda:N")
    workdir: str = field("", "folder in which the private upload folder is made (default: the system's "
                         "temporary folder)")
    log_level: str = field("info", "uvicorn's log level", choices=("critical", "error", "warning", "info", "debug"))

    def validate(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port {self.port}: expected 1..65535")
        if self.max_upload_mb <= 0 or self.queue < 1 or self.batch < 1 or self.keep_minutes <= 0:
            raise ConfigError("max_upload_mb > 0, queue >= 1, batch >= 1 and keep_minutes > 0 are required")
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(f"--host {self.host} is reachable from other machines: set a token with --token or "
                              f"{TOKEN_ENV} (every API call must then carry 'Authorization: Bearer TOKEN')")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)
