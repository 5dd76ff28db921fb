"""HTTP client for ITKIT Server: connection, models, inference jobs, error mapping.

Plain Python 3 with the standard library only (uses `requests` when it is installed, else
urllib), so the same code runs inside 3D Slicer, in batch scripts and in the tests. Nothing
here imports Slicer, Qt or VTK; ITKITInference.py keeps only the Slicer-specific glue.

Every failure is raised as an ITKITClientError subclass whose str() is a message a user can
act on (what went wrong and what to try), with the server's own message included.
itkit_tasks.py drives these blocking calls from a GUI without blocking it.
"""
from __future__ import annotations

import colorsys
import http.client
import json
import os
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

DEFAULT_SERVER_URL = "http://localhost:8000"
USER_AGENT = "ITKIT-Slicer/1.0"
TRANSPORTS = ("auto", "requests", "urllib")
BLEND_MODES = ("constant", "gaussian")
OUTPUT_FORMATS = ("nii.gz", "seg.nrrd")
JOB_END_STATES = ("done", "failed", "cancelled")


# ----------------------------------------------------------------------------- errors

class ITKITClientError(Exception):
    """Base class; str(error) is meant to be shown to the user as is."""


class InvalidParameter(ITKITClientError, ValueError):
    """A value entered by the user is unusable (checked before anything is sent)."""


class RequestsMissing(InvalidParameter):
    """transport='requests' was asked for but the package is not installed."""


class ServerUnreachable(ITKITClientError):
    """No HTTP answer at all: server down, wrong URL/port, firewall, timeout."""


class AuthenticationFailed(ITKITClientError):
    """HTTP 401/403: the API key is missing or wrong."""


class ServerError(ITKITClientError):
    """The server answered with an error; `server_message` is its own text."""

    def __init__(self, message, status=None, server_message=None):
        super().__init__(message)
        self.status = status
        self.server_message = server_message if server_message is not None else message


class ModelNotFound(ServerError):
    """The named model is not loaded on the server."""

    def __init__(self, model_name, server_message=None, status=404):
        text = (f"Model '{model_name}' is not loaded on the server. Load it in 'Model "
                f"Management' or press 'Refresh' to see the loaded models.")
        if server_message:
            text += f" (server: {server_message})"
        super().__init__(text, status, server_message)
        self.model_name = model_name


class JobNotFound(ServerError):
    """The job id is unknown (finished jobs are forgotten after a while, or the server restarted)."""


class ServerBusy(ServerError):
    """HTTP 503: queue full or resources exhausted; retry after `retry_after` seconds."""

    def __init__(self, message, retry_after=None, server_message=None):
        super().__init__(message, 503, server_message)
        self.retry_after = retry_after


class JobFailed(ServerError):
    """The job ran and ended in state 'failed'."""


class JobCancelled(ITKITClientError):
    """The job was cancelled (by this client or another one)."""


class _TransportError(Exception):
    """Internal: no HTTP response (connection refused, DNS, timeout, reset)."""


DROPPED = "connection closed without an answer"


class _JobsUnsupported(Exception):
    """Internal: the server has no /api/jobs (older server); use the synchronous /api/infer."""


# ----------------------------------------------------------------------------- small helpers

# Distinct, readable colours for labels that come without one (index 0 = background).
_PALETTE = [(0, 0, 0), (216, 101, 79), (128, 174, 128), (241, 214, 145), (177, 122, 101),
            (111, 184, 210), (221, 130, 101), (144, 238, 144), (192, 104, 88), (220, 245, 20),
            (78, 63, 0), (255, 250, 220), (230, 220, 70), (200, 200, 235), (250, 250, 210),
            (244, 214, 49), (0, 151, 206), (183, 156, 220), (183, 214, 211), (152, 189, 207)]


def default_color(index):
    """Colour (r, g, b) 0-255 for label `index` when the model gives none."""
    if 0 <= index < len(_PALETTE):
        return _PALETTE[index]
    # Golden-ratio hue steps keep neighbouring labels apart for any label count.
    rgb = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.65, 0.9)
    return tuple(int(round(c * 255)) for c in rgb)


@dataclass
class Label:
    value: int
    name: str
    color: tuple  # (r, g, b), 0-255


def model_labels(model):
    """Labels of a model entry from /api/info or /api/models, index = label value.

    Accepts `labels` as a list of names or of {"name", "color"} objects, or `names`
    (ITKIT's older field); returns [] when the model declares none.
    """
    if not isinstance(model, dict):
        return []
    raw = model.get("labels")
    if raw is None:
        raw = model.get("names") or model.get("class_names")
    if isinstance(raw, dict):  # {"0": "background", ...} or {"0": {...}}
        try:
            raw = [raw[k] for k in sorted(raw, key=lambda k: int(k))]
        except (TypeError, ValueError):
            raw = list(raw.values())
    labels = []
    for value, entry in enumerate(raw or []):
        name, color = None, None
        if isinstance(entry, dict):
            name, color = entry.get("name"), entry.get("color")
            try:
                value = int(entry.get("value", value))
            except (TypeError, ValueError):
                pass
        elif entry is not None:
            name = str(entry)
        if not name:
            name = f"label_{value}"
        try:
            rgb = tuple(int(round(float(c))) for c in color)[:3] if color else None
        except (TypeError, ValueError):
            rgb = None
        if not rgb or len(rgb) != 3:
            rgb = default_color(value)
        labels.append(Label(value, str(name), tuple(max(0, min(255, c)) for c in rgb)))
    return labels


def model_entries(models):
    """Model dicts from a `models` field: a list, or (as /api/info sends it, like upstream
    ITKIT) an object keyed by model name."""
    if isinstance(models, dict):
        models = [dict(entry, name=entry.get("name") or key)
                  for key, entry in models.items() if isinstance(entry, dict)]
    return [m for m in models or [] if isinstance(m, dict) and m.get("name")]


def parse_triplet(text, what="patch size"):
    """'96', '96,96,64', '96 96 64', '96x96x64' or [96, 96, 64] -> [z, y, x]; blank -> None."""
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        parts = [str(p) for p in text]
    else:
        cleaned = str(text).strip().strip("[]()")
        if not cleaned:
            return None
        for sep in ",x;":
            cleaned = cleaned.replace(sep, " ")
        parts = cleaned.split()
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise InvalidParameter(f"Invalid {what} '{text}': use three whole numbers such as 96,96,96.")
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or any(v <= 0 for v in values):
        raise InvalidParameter(f"Invalid {what} '{text}': use three positive whole numbers such as 96,96,96.")
    return values


def normalize_url(url):
    """Adds http:// when missing and drops trailing slashes; rejects what cannot be a server URL."""
    url = (url or "").strip() or DEFAULT_SERVER_URL
    if "://" not in url:
        url = "http://" + url
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidParameter(f"Invalid server URL '{url}': expected something like {DEFAULT_SERVER_URL}.")
    try:
        parsed.port  # raises ValueError for a non-numeric port
    except ValueError:
        raise InvalidParameter(f"Invalid port in server URL '{url}'.")
    return url.rstrip("/")


def check_model_name(name):
    """Model names appear in URLs; the server accepts letters, digits, '.', '_' and '-'."""
    if not name or len(name) > 128 or not all(c.isascii() and (c.isalnum() or c in "._-") for c in name):
        raise InvalidParameter(f"Invalid model name '{name}': use 1-128 letters, digits, '.', '_' or '-'.")
    return name


def model_name_from_path(path):
    stem = os.path.basename(path or "")
    for ext in (".onnx", ".pth", ".pt"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    name = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in stem)[:128]
    return name or "model"


def is_loopback_host(host):
    host = (host or "").strip("[]").lower()
    return host in ("localhost", "::1", "0.0.0.0") or host.startswith("127.")


def is_this_machine(host):
    """True when `host` names this computer, i.e. the server can read our file paths."""
    if is_loopback_host(host):
        return True
    host = (host or "").strip("[]").lower()
    try:
        names = {socket.gethostname().lower(), socket.getfqdn().lower()}
        if host in names:
            return True
        own = {ai[4][0] for ai in socket.getaddrinfo(socket.gethostname(), None)}
        return host in own
    except OSError:
        return False


def format_duration(seconds):
    if seconds is None:
        return ""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec:02d} s"


def encode_multipart(fields, files):
    """multipart/form-data body. files: {field: (filename, bytes, content_type)}."""
    boundary = "----ITKITBoundary" + uuid.uuid4().hex
    chunks = []
    for name, value in (fields or {}).items():
        if value is None:
            continue
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        chunks.append(str(value).encode("utf-8") + b"\r\n")
    for name, (filename, data, ctype) in (files or {}).items():
        safe = os.path.basename(filename).replace('"', "_").replace("\r", "_").replace("\n", "_")
        chunks.append((f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                       f'filename="{safe}"\r\nContent-Type: {ctype}\r\n\r\n').encode("utf-8"))
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _read_file(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidParameter(f"Cannot read {what} '{path}': {e.strerror or e}.")


def _filename_from_disposition(value):
    if not value:
        return None
    for part in value.split(";"):
        key, _, v = part.strip().partition("=")
        if key.lower() == "filename" and v:
            return os.path.basename(v.strip().strip('"')) or None
    return None


# ----------------------------------------------------------------------------- transports

@dataclass
class _Response:
    status: int
    headers: dict  # lower-case names
    body: bytes


class _UrllibTransport:
    name = "urllib"

    def __init__(self, bypass_proxy):
        # A proxy from the environment must not intercept localhost servers.
        handlers = [urllib.request.ProxyHandler({})] if bypass_proxy else []
        self._opener = urllib.request.build_opener(*handlers)

    def request(self, method, url, headers, body, timeout):
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=timeout) as r:
                return _Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            try:
                data = e.read()
            except (OSError, http.client.HTTPException):
                data = b""
            return _Response(e.code, {k.lower(): v for k, v in (e.headers or {}).items()}, data)
        except urllib.error.URLError as e:
            raise _TransportError(_reason_text(e.reason))
        except (socket.timeout, TimeoutError):
            raise _TransportError(f"no answer within {timeout:g} s")
        except (OSError, http.client.HTTPException) as e:
            raise _TransportError(_reason_text(e))


class _RequestsTransport:
    name = "requests"

    def __init__(self, bypass_proxy):
        import requests  # noqa: F401  (ImportError is the caller's signal to fall back)
        self._requests = requests
        self._bypass_proxy = bypass_proxy

    def request(self, method, url, headers, body, timeout):
        exc = self._requests.exceptions
        # A session per call: the worker thread and the GUI thread may call at once.
        with self._requests.Session() as s:
            s.trust_env = not self._bypass_proxy
            try:
                r = s.request(method, url, headers=headers, data=body, timeout=timeout)
            except exc.Timeout:
                raise _TransportError(f"no answer within {timeout:g} s")
            except exc.RequestException as e:
                raise _TransportError(_reason_text(e))
            return _Response(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)


def _reason_text(reason):
    # Unwrap requests/urllib3 chains down to the socket error a user recognises.
    seen = 0
    while seen < 5 and getattr(reason, "args", None) and isinstance(reason.args[0], BaseException):
        reason, seen = reason.args[0], seen + 1
    text = str(reason)
    if isinstance(reason, ConnectionRefusedError) or "Connection refused" in text:
        return "connection refused (nothing is listening on that host and port)"
    if isinstance(reason, socket.gaierror) or "Name or service not known" in text:
        return "unknown host name"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    if (isinstance(reason, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
            or "closed connection" in text or "Connection aborted" in text):
        return DROPPED
    return text or reason.__class__.__name__


def make_transport(kind=None, bypass_proxy=False):
    """kind None: $ITKIT_CLIENT_TRANSPORT, else auto (requests when installed, else urllib)."""
    kind = (kind or os.environ.get("ITKIT_CLIENT_TRANSPORT") or "auto").lower()
    if kind not in TRANSPORTS:
        raise InvalidParameter(f"Unknown transport '{kind}': use one of {', '.join(TRANSPORTS)}.")
    if kind in ("auto", "requests"):
        try:
            return _RequestsTransport(bypass_proxy)
        except ImportError:
            if kind == "requests":
                raise RequestsMissing(
                    "The requests library is not installed. The module works without it (it "
                    "falls back to urllib); to install it, run pip_install('requests') in "
                    "Slicer's Python console.")
    return _UrllibTransport(bypass_proxy)


# ----------------------------------------------------------------------------- options / status

@dataclass
class InferenceOptions:
    """Per-request overrides; None means 'use the model's own setting'."""
    force_cpu: bool = False
    window_level: float = None
    window_width: float = None
    patch_size: list = None
    patch_stride: list = None
    blend: str = None
    tta: bool = False
    output_format: str = "nii.gz"

    def to_fields(self):
        if (self.window_level is None) != (self.window_width is None):
            raise InvalidParameter("Give both window level and window width, or neither.")
        if self.window_width is not None and float(self.window_width) <= 0:
            raise InvalidParameter("Window width must be greater than 0.")
        if self.blend and self.blend not in BLEND_MODES:
            raise InvalidParameter(f"Blend must be one of {', '.join(BLEND_MODES)}.")
        if self.output_format not in OUTPUT_FORMATS:
            raise InvalidParameter(f"Output format must be one of {', '.join(OUTPUT_FORMATS)}.")
        fields = {"force_cpu": "true" if self.force_cpu else "false",
                  "tta": "true" if self.tta else "false",
                  "output_format": self.output_format}
        if self.window_width is not None:
            fields["window_level"] = f"{float(self.window_level):g}"
            fields["window_width"] = f"{float(self.window_width):g}"
        for key in ("patch_size", "patch_stride"):
            value = parse_triplet(getattr(self, key), key.replace("_", " "))
            if value:
                fields[key] = ",".join(str(v) for v in value)
        if self.blend:
            fields["blend"] = self.blend
        return fields


@dataclass
class JobStatus:
    job_id: str
    state: str
    stage: str = ""
    windows_done: int = 0
    windows_total: int = 0
    elapsed_seconds: float = None
    error: str = None
    server_progress: float = None  # the server's own 0..1 figure, when it gives one
    raw: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, job_id, data):
        def num(key, cast, default):
            try:
                return cast(data[key]) if data.get(key) is not None else default
            except (TypeError, ValueError):
                return default
        state = str(data.get("state") or data.get("status") or "unknown").lower()
        state = {"completed": "done", "succeeded": "done", "finished": "done", "error": "failed",
                 "canceled": "cancelled", "pending": "queued"}.get(state, state)
        return cls(job_id=str(data.get("job_id") or data.get("id") or job_id), state=state,
                   stage=str(data.get("stage") or ""),
                   windows_done=num("windows_done", int, 0), windows_total=num("windows_total", int, 0),
                   elapsed_seconds=num("elapsed_seconds", float, num("elapsed_s", float, None)),
                   server_progress=num("progress", float, None),
                   error=data.get("error") or data.get("message"), raw=data)

    @property
    def finished(self):
        return self.state in JOB_END_STATES

    @property
    def progress(self):
        """Fraction 0..1 of sliding windows done, or None while unknown."""
        if self.state == "done":
            return 1.0
        if self.windows_total > 0:
            return max(0.0, min(1.0, self.windows_done / self.windows_total))
        if self.server_progress:
            return max(0.0, min(1.0, self.server_progress))
        return None


# ----------------------------------------------------------------------------- client

class ITKITClient:
    """Blocking client for one ITKIT server. Safe to call from worker threads."""

    def __init__(self, server_url=DEFAULT_SERVER_URL, api_key=None, timeout=30.0,
                 transfer_timeout=900.0, transport=None):
        self.server_url = normalize_url(server_url)
        self.api_key = (api_key or "").strip() or None
        self.timeout = timeout                     # small JSON calls
        self.transfer_timeout = transfer_timeout   # uploads, synchronous inference, downloads
        host = urllib.parse.urlsplit(self.server_url).hostname
        self._transport = make_transport(transport, bypass_proxy=is_loopback_host(host))
        self._host = host
        self._is_local = None

    @property
    def transport_name(self):
        return self._transport.name

    @property
    def is_local(self):
        """Whether the server runs on this machine (and so can read local file paths).
        May resolve host names (first call only): call it off the GUI thread."""
        if self._is_local is None:
            self._is_local = is_this_machine(self._host)
        return self._is_local

    # -- plumbing

    def _call(self, method, path, *, json_body=None, fields=None, files=None, timeout=None,
              not_found=None):
        url = self.server_url + path
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif fields is not None or files:
            body, headers["Content-Type"] = encode_multipart(fields, files)
        try:
            resp = self._transport.request(method, url, headers, body, timeout or self.timeout)
        except _TransportError as e:
            if str(e) == DROPPED:
                raise ServerUnreachable(
                    f"The server at {self.server_url} closed the connection without answering; "
                    f"it may have crashed or restarted. Check the server's log, then reconnect.") from None
            raise ServerUnreachable(
                f"Cannot connect to ITKIT server at {self.server_url}: {e}. Check that "
                f"itkit_server is running (open {self.server_url}/api/health in a browser or "
                f"with curl), that the URL and port are right, and for a remote server that it "
                f"listens on 0.0.0.0 (--host 0.0.0.0) and the firewall allows the port.") from None
        if resp.status >= 400:
            raise self._error_for(resp, not_found)
        return resp

    def _error_for(self, resp, not_found):
        message = _server_message(resp)
        status = resp.status
        if status == 401:  # 403 is not about the key: e.g. a model path outside the server's roots
            if self.api_key:
                text = ("The server rejected the API key. Enter the key the server was started "
                        "with in the 'API key' field.")
            else:
                text = ("The server requires an API key. Enter it in the 'API key' field "
                        "(it is sent as 'Authorization: Bearer KEY').")
            return AuthenticationFailed(f"{text} (HTTP {status}: {message})")
        if status == 404 and not_found is not None:
            err = not_found(message)
            if err is not None:
                return err
        if status == 503:
            retry = resp.headers.get("retry-after")
            try:
                retry = float(retry) if retry is not None else None
            except ValueError:
                retry = None
            hint = f" Try again in {retry:g} s." if retry else " Try again shortly."
            return ServerBusy(f"The server is busy: {message}.{hint}", retry, message)
        if status == 413:
            return ServerError(f"The server refused the upload as too large: {message}. "
                               f"Raise the server's upload limit or crop the volume.", status, message)
        return ServerError(f"Server error (HTTP {status}): {message}", status, message)

    def _json(self, resp):
        try:
            return json.loads(resp.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, ValueError):
            snippet = resp.body[:120].decode("utf-8", "replace")
            raise ServerError(f"The server at {self.server_url} did not answer with JSON "
                              f"(is this an ITKIT server?): {snippet!r}", resp.status)

    def _get_json(self, path, **kw):
        return self._json(self._call("GET", path, **kw))

    # -- server

    def health(self):
        return self._get_json("/api/health", timeout=min(self.timeout, 10.0))

    def info(self):
        return self._get_json("/api/info")

    def connect(self):
        """health + info (+ whether the server is on this machine); raises ServerUnreachable /
        AuthenticationFailed / ServerError."""
        health = self.health()
        info = self.info()
        return {"health": health, "info": info, "is_local": self.is_local}

    def openapi(self):
        return self._get_json("/api/openapi.json")

    # -- models

    def list_models(self):
        """Loaded models as a list of dicts (name, backend, labels, inference_config, ...)."""
        try:
            data = self._get_json("/api/models")
        except ServerError as e:
            if e.status not in (404, 405):
                raise
            data = self.info()  # older servers list models only in /api/info
        return model_entries(data.get("models") if isinstance(data, dict) else data)

    def get_model(self, name):
        for model in self.list_models():
            if model.get("name") == name:
                return model
        raise ModelNotFound(name)

    def load_model(self, name, model_path, backend_type="onnx", config_path=None,
                   patch_size=None, patch_stride=None, fp16=None, inference_config=None,
                   upload=None, sidecar_path=None):
        """Loads a model on the server. upload=None decides by is_local: a server on another
        machine cannot read our paths, so the file itself is sent (POST /api/models/upload);
        a local server that refuses the path (403, outside its model roots) gets the file too."""
        name = (name or "").strip() or model_name_from_path(model_path)
        check_model_name(name)
        backend = (backend_type or "onnx").strip().lower()
        backend = "mmengine" if backend.startswith("mmengine") else backend
        if backend not in ("onnx", "mmengine"):
            raise InvalidParameter(f"Unknown backend '{backend_type}': use ONNX or MMEngine.")
        if not model_path:
            raise InvalidParameter("Select a model file (.onnx, or .pth for MMEngine).")
        config = dict(inference_config or {})
        for key, value in (("patch_size", patch_size), ("patch_stride", patch_stride)):
            value = parse_triplet(value, key.replace("_", " "))
            if value:
                config[key] = value
        if fp16 is not None:
            config["fp16"] = bool(fp16)
        auto_upload = upload is None
        if auto_upload:
            upload = not self.is_local
        if upload and backend == "onnx":
            return self.upload_model(model_path, name=name, sidecar_path=sidecar_path,
                                     inference_config=config or None)
        if self.is_local and not os.path.isfile(model_path):
            raise InvalidParameter(f"Model file not found: {model_path}")
        body = {"name": name, "backend_type": backend, "model_path": os.path.abspath(model_path)
                if self.is_local else model_path}
        if config_path:
            body["config_path"] = os.path.abspath(config_path) if self.is_local else config_path
        if config:
            body["inference_config"] = config
        try:
            data = self._get_json_post("/api/models", body)
        except ServerError as e:
            if e.status == 403 and auto_upload and backend == "onnx":
                # The server only reads paths under its --model-dir/--model-root directories.
                return self.upload_model(model_path, name=name, sidecar_path=sidecar_path,
                                         inference_config=config or None)
            if e.status == 403:
                raise ServerError(f"{e}. The server only loads model files from its --model-dir "
                                  f"and --model-root directories: copy the model there, start "
                                  f"the server with --model-root DIR, or tick 'Upload model "
                                  f"file' to send the file.", e.status, e.server_message) from None
            if e.status in (400, 404) and not self.is_local:
                raise ServerError(f"{e} (the server reads model paths on its own machine; "
                                  f"tick 'Upload model file' to send the file instead)",
                                  e.status, e.server_message) from None
            raise
        return _model_from_reply(data, name)

    def _get_json_post(self, path, body):
        return self._json(self._call("POST", path, json_body=body, timeout=self.transfer_timeout))

    def upload_model(self, model_path, name=None, sidecar_path=None, inference_config=None):
        """POST /api/models/upload: the .onnx (and its YAML sidecar, taken from NAME.yaml next to
        it when not given) as multipart fields `file` / `sidecar`."""
        if not os.path.isfile(model_path):
            raise InvalidParameter(f"Model file not found: {model_path}")
        if sidecar_path is None:
            guess = os.path.splitext(model_path)[0] + ".yaml"
            sidecar_path = guess if os.path.isfile(guess) else None
        if name:
            check_model_name(name)
        model = (os.path.basename(model_path), _read_file(model_path, "model file"),
                 "application/octet-stream")
        files = {}
        if sidecar_path:
            files["sidecar"] = (os.path.basename(sidecar_path), _read_file(sidecar_path, "sidecar"),
                                "application/x-yaml")
        fields = {"name": name or None}
        if inference_config:
            fields["inference_config"] = json.dumps(inference_config)
        # itkit_server names the file part 'model'; accept a server that asks for 'file' too.
        for field_name in ("model", "file"):
            try:
                resp = self._call("POST", "/api/models/upload", fields=fields,
                                  files={field_name: model, **files}, timeout=self.transfer_timeout)
                break
            except ServerError as e:
                if not (e.status == 400 and field_name == "model" and "'file'" in (e.server_message or "")):
                    raise
        return _model_from_reply(self._json(resp), name)

    def unload_model(self, name):
        quoted = urllib.parse.quote(name, safe="")
        self._call("DELETE", f"/api/models/{quoted}",
                   not_found=lambda msg: ModelNotFound(name, msg))
        return True

    # -- inference

    def _image_files(self, image_path):
        if not os.path.isfile(image_path):
            raise InvalidParameter(f"Image file not found: {image_path}")
        return {"image": (os.path.basename(image_path), _read_file(image_path, "image"),
                          "application/octet-stream")}

    def _infer_fields(self, model_name, options):
        if not model_name:
            raise InvalidParameter("Select a model (load one in 'Model Management' first).")
        fields = (options or InferenceOptions()).to_fields()
        fields["model_name"] = model_name
        return fields

    def _model_missing(self, model_name):
        # A 404 on an inference route means the model is missing, unless the route itself is.
        def handler(message):
            text = message or ""
            if "model" in text.lower() or f"'{model_name}'" in text:
                return ModelNotFound(model_name, message)
            return None
        return handler

    def infer(self, image_path, model_name, output_path=None, options=None):
        """Synchronous POST /api/infer; writes the label file and returns its path."""
        fields = self._infer_fields(model_name, options)
        resp = self._call("POST", "/api/infer", fields=fields, files=self._image_files(image_path),
                          timeout=self.transfer_timeout, not_found=self._model_missing(model_name))
        return _write_result(resp, output_path, options)

    def submit_job(self, image_path, model_name, options=None):
        """POST /api/jobs; returns the job id."""
        fields = self._infer_fields(model_name, options)

        def not_found(message):
            err = self._model_missing(model_name)(message)
            return err if err is not None else _JobsUnsupported(message)
        try:
            resp = self._call("POST", "/api/jobs", fields=fields, files=self._image_files(image_path),
                              timeout=self.transfer_timeout, not_found=not_found)
        except ServerError as e:
            if e.status == 405:
                raise _JobsUnsupported(e.server_message) from None
            raise
        data = self._json(resp)
        job_id = (data or {}).get("job_id") or (data or {}).get("id")
        if not job_id:
            raise ServerError(f"The server accepted the job but returned no job id: {data!r}", resp.status)
        return str(job_id)

    def _job_path(self, job_id, suffix=""):
        return f"/api/jobs/{urllib.parse.quote(str(job_id), safe='')}{suffix}"

    def _job_missing(self, job_id):
        return lambda msg: JobNotFound(f"Job {job_id} is unknown to the server (it may have "
                                       f"restarted): {msg}", 404, msg)

    def job_status(self, job_id):
        data = self._get_json(self._job_path(job_id), not_found=self._job_missing(job_id))
        return JobStatus.from_json(job_id, data or {})

    def cancel_job(self, job_id):
        resp = self._call("DELETE", self._job_path(job_id), not_found=self._job_missing(job_id))
        try:
            data = json.loads(resp.body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError):
            data = {}
        return JobStatus.from_json(job_id, data) if isinstance(data, dict) and data else None

    def download_result(self, job_id, output_path=None, options=None):
        try:
            resp = self._call("GET", self._job_path(job_id, "/result"), timeout=self.transfer_timeout,
                              not_found=self._job_missing(job_id))
        except ServerError as e:
            text = (e.server_message or "").lower()
            if e.status == 409 and "cancelled" in text:  # 409: the job has no result (yet)
                raise JobCancelled(f"Job {job_id} was cancelled.") from None
            if e.status == 409 and "failed" in text:
                raise JobFailed(f"Inference failed on the server: {e.server_message}",
                                e.status, e.server_message) from None
            raise
        return _write_result(resp, output_path, options)

    def wait_for_job(self, job_id, poll_interval=0.5, timeout=None, callback=None):
        """Polls until the job ends; raises JobFailed / JobCancelled; returns the final JobStatus."""
        start = time.monotonic()
        while True:
            status = self.job_status(job_id)
            if callback:
                callback(status)
            if status.state == "done":
                return status
            if status.state == "failed":
                raise JobFailed(f"Inference failed on the server: {status.error or 'no message'}",
                                None, status.error)
            if status.state == "cancelled":
                raise JobCancelled(f"Job {job_id} was cancelled.")
            if timeout is not None and time.monotonic() - start > timeout:
                raise ServerError(f"Job {job_id} did not finish within {timeout:g} s "
                                  f"(last state: {status.state}).")
            time.sleep(poll_interval)

    def segment(self, image_path, model_name, output_path=None, options=None, callback=None,
                poll_interval=0.5, timeout=None):
        """Blocking convenience for scripts: job + wait + download (falls back to /api/infer)."""
        try:
            job_id = self.submit_job(image_path, model_name, options)
        except _JobsUnsupported:
            return self.infer(image_path, model_name, output_path, options)
        self.wait_for_job(job_id, poll_interval, timeout, callback)
        return self.download_result(job_id, output_path, options)


def _server_message(resp):
    try:
        data = json.loads(resp.body.decode("utf-8"))
        if isinstance(data, dict):
            for key in ("error", "message", "detail"):
                if data.get(key):
                    return str(data[key])
    except (UnicodeDecodeError, ValueError):
        pass
    text = resp.body[:300].decode("utf-8", "replace").strip()
    return text or http.client.responses.get(resp.status, "unknown error")


def _model_from_reply(data, name):
    # Servers answer with the model entry, {"model": {...}} or a bare status object.
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        return data["model"]
    if isinstance(data, dict):
        entry = dict(data)
        if name and "name" not in entry:
            entry["name"] = name
        return entry
    return {"name": name}


def _write_result(resp, output_path, options):
    if output_path is None:
        ext = (options.output_format if options else "nii.gz")
        name = _filename_from_disposition(resp.headers.get("content-disposition")) or f"segmentation.{ext}"
        output_path = os.path.join(tempfile.mkdtemp(prefix="itkit_"), name)
    with open(output_path, "wb") as f:
        f.write(resp.body)
    return output_path


# Slicer treats every .py file in a module folder as a scripted module and logs an error for
# a file without a class of its own name; a hidden module class keeps the startup log clean.
def slicer_hidden_module(module_name):
    """A hidden ScriptedLoadableModule class named `module_name`, or None outside Slicer."""
    try:
        from slicer.ScriptedLoadableModule import ScriptedLoadableModule
    except ImportError:
        return None

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = f"ITKIT Inference library ({module_name})"
        parent.categories = ["Developer Tools"]
        parent.hidden = True
        parent.helpText = "Support code of the ITKIT Inference module."
        parent.contributors = ["ITKIT Server developers"]
        import slicer  # no self-test of its own: keep it out of Slicer's "run all self tests"
        getattr(slicer, "selfTests", {}).pop(module_name, None)
    return type(module_name, (ScriptedLoadableModule,), {"__init__": __init__})


itkit_client = slicer_hidden_module("itkit_client")
