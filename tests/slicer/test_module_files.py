"""Checks of the Slicer module's files that need no Slicer: the Qt Designer UI defines every
widget the Python code uses, the icon is a 128x128 PNG, the extension CMake lists every
file, and each .py in the module folder can be loaded by Slicer's module scanner."""
import ast
import os
import re
import struct
import xml.etree.ElementTree as ET

from conftest import REPO

MODULE_DIR = os.path.join(REPO, "slicer_module", "ITKITInference")
UI_PATH = os.path.join(MODULE_DIR, "Resources", "UI", "ITKITInference.ui")
ICON_PATH = os.path.join(MODULE_DIR, "Resources", "Icons", "ITKITInference.png")
MODULE_PY = os.path.join(MODULE_DIR, "ITKITInference.py")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _ui_widgets():
    root = ET.parse(UI_PATH).getroot()
    assert root.tag == "ui" and root.findtext("class") == "ITKITInference"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget"  # so setMRMLScene reaches the node selectors
    return {w.get("name"): w.get("class") for w in root.iter("widget")}, root


def test_ui_has_every_widget_the_code_uses():
    widgets, _ = _ui_widgets()
    used = set(re.findall(r"\bui\.([A-Za-z_][A-Za-z0-9_]*)", _read(MODULE_PY)))
    missing = sorted(used - set(widgets))
    assert not missing, f"ITKITInference.py uses widgets missing from the .ui: {missing}"
    assert widgets["inputVolumeSelector"] == "qMRMLNodeComboBox"
    assert widgets["modelPathLineEdit"] == "ctkPathLineEdit"


def test_ui_custom_widgets_and_connections():
    widgets, root = _ui_widgets()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    standard = {c for c in widgets.values() if c.startswith("Q")}
    assert set(widgets.values()) - standard <= declared
    for conn in root.iter("connection"):
        assert conn.findtext("sender") in widgets and conn.findtext("receiver") in widgets
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    assert receivers == {n for n, c in widgets.items() if c == "qMRMLNodeComboBox"}


def test_icon_is_128px_png():
    with open(ICON_PATH, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (128, 128)


def test_cmake_lists_every_file():
    cmake = _read(os.path.join(MODULE_DIR, "CMakeLists.txt")).replace("${MODULE_NAME}", "ITKITInference")
    py_files = sorted(f for f in os.listdir(MODULE_DIR) if f.endswith(".py"))
    for name in py_files + ["Resources/Icons/ITKITInference.png", "Resources/UI/ITKITInference.ui"]:
        assert name in cmake, f"{name} is not listed in slicer_module/ITKITInference/CMakeLists.txt"
    top = _read(os.path.join(REPO, "slicer_module", "CMakeLists.txt"))
    assert "add_subdirectory(ITKITInference)" in top and "find_package(Slicer REQUIRED)" in top


def test_every_python_file_is_a_loadable_slicer_module():
    # Slicer instantiates a class named after each .py file in a module folder.
    for name in os.listdir(MODULE_DIR):
        if not name.endswith(".py"):
            continue
        stem = name[:-3]
        tree = ast.parse(_read(os.path.join(MODULE_DIR, name)))
        top_names = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
        top_names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                      if isinstance(t, ast.Name)}
        assert stem in top_names, f"{name} defines no '{stem}' for Slicer's module scanner"


def test_module_classes_and_metadata():
    tree = ast.parse(_read(MODULE_PY))
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    bases = {name: {getattr(b, "id", None) for b in c.bases} for name, c in classes.items()}
    assert "ScriptedLoadableModule" in bases["ITKITInference"]
    assert "ScriptedLoadableModuleWidget" in bases["ITKITInferenceWidget"]
    assert "ScriptedLoadableModuleLogic" in bases["ITKITInferenceLogic"]
    assert "ScriptedLoadableModuleTest" in bases["ITKITInferenceTest"]
    source = _read(MODULE_PY)
    assert 'title = "ITKIT Inference"' in source and 'categories = ["Segmentation"]' in source
