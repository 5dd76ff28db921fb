import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def pytest_addoption(parser):
    parser.addoption("--itkit-infer", default=os.environ.get("ITKIT_INFER"),
                     help="path of the itkit_infer binary (or $ITKIT_INFER)")


@pytest.fixture(scope="session")
def itkit_infer(request):
    path = request.config.getoption("--itkit-infer")
    if not path:
        here = os.path.dirname(__file__)
        for build in ("build", "build-pipeline"):
            cand = os.path.join(here, "..", "..", build, "pipeline", "itkit_infer")
            if os.path.exists(cand):
                path = cand
                break
    if not path or not os.path.exists(path):
        pytest.fail("itkit_infer not found: pass --itkit-infer PATH or set ITKIT_INFER")
    return os.path.abspath(path)
