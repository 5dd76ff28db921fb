"""schemathesis against /api/openapi.json on the live server: no 5xx, and no
response that contradicts the schema (status, content type, headers, body)."""
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.schemathesis

CHECKS = ",".join(["not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_headers_conformance", "response_schema_conformance", "unsupported_method",
                   "allow_header_conformance"])


def test_schemathesis(make_server, model_dir, tmp_path):
    s = make_server("--model-dir", model_dir, "--max-upload-mb", "4")
    exe = pathlib.Path(sys.executable).with_name("schemathesis")
    cmd = [str(exe), "run", f"{s.url}/api/openapi.json", "--checks", CHECKS, "--max-examples", "15",
           "--max-time", "60", "--workers", "1", "--seed", "1", "--request-timeout", "60",
           "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all",
           "--report", "junit", "--report-dir", str(tmp_path / "report")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=tmp_path,
                       env=dict(os.environ, SCHEMATHESIS_HOOKS=""))
    print(p.stdout[-20000:])
    assert p.returncode == 0, p.stdout[-20000:] + p.stderr[-5000:]
    assert s.alive()
    assert "internal error" not in s.log_text()
