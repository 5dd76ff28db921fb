"""3D Slicer module "ITKIT Inference": segments volumes with models served by itkit_server.

Only the Slicer glue lives here (widgets, MRML nodes, settings); the HTTP client and the
non-blocking job driver are plain Python (itkit_client.py, itkit_tasks.py) and are tested
outside Slicer. Needs nothing beyond what Slicer ships; `requests` is used when installed.
"""
import logging
import os
import shutil
import sys
import tempfile
import time

import ctk
import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # Slicer adds module folders to sys.path; this covers odd setups
    sys.path.insert(0, _HERE)

import itkit_client as ic  # noqa: E402
import itkit_tasks  # noqa: E402

SETTINGS = "ITKITInference/"
TICK_MS = 100
STATUS_COLORS = {True: "#2a7d2a", False: "#c0392b", None: "#555555"}


def _settings_bool(value):
    return str(value).lower() in ("true", "1", "yes")


# ----------------------------------------------------------------------------- module

class ITKITInference(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ITKIT Inference"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["ITKIT Server developers"]
        self.parent.helpText = (
            "Segments the selected volume with a deep-learning model running on an ITKIT "
            "server (itkit_server): connect to the server, load a model (ONNX), pick a volume "
            "and run inference; the result appears as a segmentation with the model's label "
            "names and colours. See docs/slicer.md in the ITKIT Server repository.")
        self.parent.acknowledgementText = (
            "Client of ITKIT Server, a C++ reimplementation of the ITKIT inference server "
            "(https://github.com/MGAMZ/ITKIT). Client-server design as in MONAI Label.")


# ----------------------------------------------------------------------------- widget

class ITKITInferenceWidget(ScriptedLoadableModuleWidget):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None
        self.ui = None
        self._tasks = None
        self._timer = None
        self._run = None          # itkit_tasks.InferenceRun in progress
        self._runContext = None   # (volume node id, model name, output segmentation id)
        self._models = {}         # name -> model entry from the server
        self._connected = False
        self._connectAttempt = 0  # only the latest Connect click's answer counts
        self._serverIsLocal = True
        self._loadingModel = False

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ITKITInference.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ITKITInferenceLogic()
        self._tasks = itkit_tasks.BackgroundTasks()
        self._timer = qt.QTimer()
        self._timer.setInterval(TICK_MS)
        self._timer.connect("timeout()", self._onTick)

        self.ui.modelPathLineEdit.filters = ctk.ctkPathLineEdit.Files
        self.ui.modelPathLineEdit.nameFilters = ["Models (*.onnx *.pth)", "All files (*)"]
        self.ui.modelPathLineEdit.settingKey = SETTINGS + "ModelPathHistory"
        self.ui.configPathLineEdit.filters = ctk.ctkPathLineEdit.Files
        self.ui.configPathLineEdit.nameFilters = ["MMEngine config (*.py)", "All files (*)"]

        settings = qt.QSettings()
        self.ui.serverUrlLineEdit.text = settings.value(SETTINGS + "ServerURL", ic.DEFAULT_SERVER_URL)
        remember = _settings_bool(settings.value(SETTINGS + "RememberAPIKey", "false"))
        self.ui.rememberApiKeyCheckBox.checked = remember
        self.ui.apiKeyLineEdit.text = settings.value(SETTINGS + "APIKey", "") if remember else ""

        self.ui.connectButton.connect("clicked(bool)", self.onConnect)
        self.ui.serverUrlLineEdit.connect("returnPressed()", self.onConnect)
        self.ui.serverUrlLineEdit.connect("textEdited(QString)", self._onServerEdited)
        self.ui.apiKeyLineEdit.connect("textEdited(QString)", self._onServerEdited)
        self.ui.backendComboBox.connect("currentIndexChanged(int)", self._updateButtons)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self._updateButtons)
        self.ui.loadModelButton.connect("clicked(bool)", self.onLoadModel)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.onRefreshModels)
        self.ui.unloadModelButton.connect("clicked(bool)", self.onUnloadModel)
        self.ui.loadedModelsTreeWidget.connect("itemSelectionChanged()", self._onModelTreeSelection)
        self.ui.modelSelectorComboBox.connect("currentIndexChanged(int)", self._updateButtons)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._updateButtons)
        self.ui.runButton.connect("clicked(bool)", self.onRunInference)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.loadedModelsTreeWidget.header().setSectionResizeMode(0, qt.QHeaderView.ResizeToContents)
        self._updateButtons()

    def cleanup(self):
        if self._run is not None:
            self._run.cancel()
        if self._timer is not None:
            self._timer.stop()
        if self._tasks is not None:
            self._tasks.shutdown()
        if self.logic is not None:
            self.logic.cleanup()

    # -- background work

    def _submit(self, fn, *args, onDone=None, onError=None, **kwargs):
        self._tasks.submit(fn, *args, on_done=onDone, on_error=onError, **kwargs)
        self._timer.start()

    def _onTick(self):
        try:
            self._tasks.poll()
            if self._run is not None:
                active = self._run.tick()
                self._showRunProgress()
                if not active:
                    self._onRunFinished()
        except Exception as e:  # a bug must not leave the timer firing errors forever
            logging.exception("ITKIT Inference: unexpected error")
            self._setLabel(self.ui.inferenceStatusLabel, False, f"Internal error: {e}")
            self._run = None
        busy = self._tasks.busy or (self._run is not None and self._run.busy)
        if busy:
            # Lets worker threads take the GIL on Slicer builds whose GUI thread holds it
            # between events; 5 ms per tick is not noticeable.
            time.sleep(0.005)
        if not self._tasks.pending and self._run is None:
            self._timer.stop()
        self._updateButtons()

    # -- server connection

    def _saveSettings(self):
        settings = qt.QSettings()
        settings.setValue(SETTINGS + "ServerURL", self.ui.serverUrlLineEdit.text.strip())
        remember = self.ui.rememberApiKeyCheckBox.checked
        settings.setValue(SETTINGS + "RememberAPIKey", "true" if remember else "false")
        settings.setValue(SETTINGS + "APIKey", self.ui.apiKeyLineEdit.text if remember else "")

    def _onServerEdited(self, _text=None):
        if self._connected:
            self._connected = False
            self._setLabel(self.ui.serverStatusLabel, None, "Not connected (server settings changed)")
        self._updateButtons()

    def onConnect(self):
        self._saveSettings()
        try:
            client = self.logic.setServer(self.ui.serverUrlLineEdit.text, self.ui.apiKeyLineEdit.text)
        except ic.ITKITClientError as e:
            self._setLabel(self.ui.serverStatusLabel, False, str(e))
            return
        self.ui.serverUrlLineEdit.text = client.server_url
        self._connected = False
        self._setLabel(self.ui.serverStatusLabel, None, f"Connecting to {client.server_url}...")
        self.ui.serverInfoLabel.text = ""
        self._connectAttempt += 1
        attempt = self._connectAttempt
        self._submit(client.connect,
                     onDone=lambda reply: attempt == self._connectAttempt and self._onConnected(reply),
                     onError=lambda error: attempt == self._connectAttempt and self._onConnectFailed(error))

    def _onConnected(self, reply):
        self._connected = True
        info = reply.get("info") or {}
        self._setLabel(self.ui.serverStatusLabel, True, "Connected")
        self.ui.serverInfoLabel.text = itkit_tasks.server_summary(reply, self.logic.client.transport_name)
        self._serverIsLocal = reply.get("is_local", True)
        self.ui.uploadModelCheckBox.checked = not self._serverIsLocal
        self._setModels(ic.model_entries(info.get("models")))
        self.onRefreshModels()

    def _onConnectFailed(self, error):
        self._connected = False
        self._setLabel(self.ui.serverStatusLabel, False, f"Connection failed: {error}")
        self._setModels([])

    # -- models

    def onRefreshModels(self):
        if self.logic.client is None:
            return
        self._submit(self.logic.client.list_models, onDone=self._setModels,
                     onError=lambda e: self._setLabel(self.ui.modelStatusLabel, False, str(e)))

    def _setModels(self, models):
        models = ic.model_entries(models)
        self._models = {m["name"]: m for m in models}
        tree = self.ui.loadedModelsTreeWidget
        selected = self._selectedTreeModel()
        tree.clear()
        for model in models:
            item = qt.QTreeWidgetItem()
            item.setText(0, model["name"])
            config = model.get("inference_config") or {}
            patch = model.get("patch_size") or config.get("patch_size")
            details = [str(model.get("backend_type") or "onnx")]
            if model.get("backend") and model.get("backend") != model.get("backend_type"):
                details.append(str(model["backend"]))
            if patch:
                details.append("patch " + "x".join(str(p) for p in patch))
            if model.get("input_channels"):
                details.append(f"{model['input_channels']} channel(s)")
            item.setText(1, ", ".join(details))
            item.setData(0, qt.Qt.UserRole, model["name"])
            for label in ic.model_labels(model):
                child = qt.QTreeWidgetItem()
                child.setText(0, f"{label.value}: {label.name}")
                pixmap = qt.QPixmap(12, 12)
                pixmap.fill(qt.QColor(*label.color))
                child.setIcon(0, qt.QIcon(pixmap))
                child.setData(0, qt.Qt.UserRole, model["name"])
                item.addChild(child)
            tree.addTopLevelItem(item)
            if model["name"] == selected:
                tree.setCurrentItem(item)
        combo = self.ui.modelSelectorComboBox
        current = combo.currentText or qt.QSettings().value(SETTINGS + "LastModel", "")
        combo.blockSignals(True)
        combo.clear()
        for name in self._models:
            combo.addItem(name)
        index = combo.findText(current)
        combo.setCurrentIndex(index if index >= 0 else (0 if self._models else -1))
        combo.blockSignals(False)
        self._updateButtons()

    def _selectedTreeModel(self):
        item = self.ui.loadedModelsTreeWidget.currentItem()
        return item.data(0, qt.Qt.UserRole) if item is not None else None

    def _onModelTreeSelection(self):
        name = self._selectedTreeModel()
        if name:
            index = self.ui.modelSelectorComboBox.findText(name)
            if index >= 0:
                self.ui.modelSelectorComboBox.setCurrentIndex(index)
        self._updateButtons()

    def onLoadModel(self):
        backend = "mmengine" if self.ui.backendComboBox.currentIndex == 1 else "onnx"
        modelPath = self.ui.modelPathLineEdit.currentPath
        name = self.ui.modelNameLineEdit.text.strip() or ic.model_name_from_path(modelPath)
        # Unticked "Upload": send the path; on this machine fall back to uploading the file
        # when the server refuses the path (outside its model folders).
        upload = True if self.ui.uploadModelCheckBox.checked else (None if self._serverIsLocal else False)
        kwargs = dict(backend_type=backend, config_path=self.ui.configPathLineEdit.currentPath or None,
                      patch_size=self.ui.patchSizeLineEdit.text, patch_stride=self.ui.patchStrideLineEdit.text,
                      fp16=True if self.ui.fp16CheckBox.checked else None,  # unticked: model's own
                      upload=upload)
        self.ui.modelPathLineEdit.addCurrentPathToHistory()
        self._loadingModel = True
        how = "Uploading and loading" if self.ui.uploadModelCheckBox.checked else "Loading"
        self._setLabel(self.ui.modelStatusLabel, None, f"{how} model '{name}' on the server...")
        self._submit(self.logic.client.load_model, name, modelPath, **kwargs,
                     onDone=lambda reply: self._onModelLoaded(name, reply),
                     onError=self._onModelLoadFailed)

    def _onModelLoaded(self, name, reply):
        self._loadingModel = False
        name = (reply or {}).get("name") or name
        labels = ic.model_labels(reply)
        extra = f" ({len(labels)} labels)" if labels else ""
        self._setLabel(self.ui.modelStatusLabel, True, f"Model '{name}' loaded{extra}.")
        qt.QSettings().setValue(SETTINGS + "LastModel", name)
        combo = self.ui.modelSelectorComboBox
        if combo.findText(name) < 0:
            combo.addItem(name)  # usable at once; the refresh below fills in the details
        combo.setCurrentIndex(combo.findText(name))
        self.onRefreshModels()

    def _onModelLoadFailed(self, error):
        self._loadingModel = False
        self._setLabel(self.ui.modelStatusLabel, False, f"Model loading failed: {error}")

    def onUnloadModel(self):
        name = self._selectedTreeModel() or self.ui.modelSelectorComboBox.currentText
        if not name:
            return
        self._setLabel(self.ui.modelStatusLabel, None, f"Unloading '{name}'...")

        def done(_):
            self._setLabel(self.ui.modelStatusLabel, True, f"Model '{name}' unloaded.")
            self.onRefreshModels()

        def failed(error):
            self._setLabel(self.ui.modelStatusLabel, False, str(error))
            self.onRefreshModels()
        self._submit(self.logic.client.unload_model, name, onDone=done, onError=failed)

    # -- inference

    def _inferenceOptions(self):
        blend = self.ui.blendComboBox.currentText
        override = self.ui.windowOverrideCheckBox.checked
        return ic.InferenceOptions(
            force_cpu=self.ui.forceCpuCheckBox.checked,
            window_level=self.ui.windowLevelSpinBox.value if override else None,
            window_width=self.ui.windowWidthSpinBox.value if override else None,
            patch_size=self.ui.inferPatchSizeLineEdit.text or None,
            patch_stride=self.ui.inferPatchStrideLineEdit.text or None,
            blend=blend if blend in ic.BLEND_MODES else None,
            tta=self.ui.ttaCheckBox.checked)

    def onRunInference(self):
        volumeNode = self.ui.inputVolumeSelector.currentNode()
        modelName = self.ui.modelSelectorComboBox.currentText
        try:
            options = self._inferenceOptions()
            options.to_fields()  # validate before anything is written or sent
            self._setLabel(self.ui.inferenceStatusLabel, None, "Preparing the volume...")
            self._run = self.logic.startInference(volumeNode, modelName, options)
        except ic.ITKITClientError as e:
            self._setLabel(self.ui.inferenceStatusLabel, False, str(e))
            return
        segNode = self.ui.outputSegmentationSelector.currentNode()
        self._runContext = (volumeNode.GetID(), modelName, segNode.GetID() if segNode else None)
        qt.QSettings().setValue(SETTINGS + "LastModel", modelName)
        self.ui.progressBar.setRange(0, 0)  # busy indicator until the server reports windows
        self._timer.start()
        self._updateButtons()

    def onCancel(self):
        if self._run is not None:
            self._run.cancel()

    def _showRunProgress(self):
        run = self._run
        progress = run.progress
        if progress is None:
            self.ui.progressBar.setRange(0, 0)
        else:
            self.ui.progressBar.setRange(0, 100)
            self.ui.progressBar.setValue(int(round(progress * 100)))
        self.ui.elapsedLabel.text = ic.format_duration(run.elapsed)
        if not run.finished:
            self._setLabel(self.ui.inferenceStatusLabel, None, run.message)

    def _onRunFinished(self):
        run, (volumeId, modelName, segId) = self._run, self._runContext
        self._run = self._runContext = None
        self.ui.progressBar.setRange(0, 100)
        self.ui.elapsedLabel.text = ic.format_duration(run.elapsed)
        if run.phase == "done":
            try:
                volumeNode = slicer.mrmlScene.GetNodeByID(volumeId)
                if volumeNode is None:
                    raise ic.ITKITClientError("The input volume was removed while the server worked.")
                segNode = slicer.mrmlScene.GetNodeByID(segId) if segId else None
                segNode = self.logic.loadResult(run.result_path, volumeNode, self._models.get(modelName, {}),
                                                segNode, modelName, show3D=self.ui.show3DCheckBox.checked)
                self.ui.progressBar.setValue(100)
                count = segNode.GetSegmentation().GetNumberOfSegments()
                self._setLabel(self.ui.inferenceStatusLabel, True,
                               f"{run.message} {count} segment(s) in '{segNode.GetName()}'.")
            except Exception as e:
                logging.exception("ITKIT Inference: loading the result failed")
                self._setLabel(self.ui.inferenceStatusLabel, False, f"Could not load the result: {e}")
            finally:
                self.logic.discardRunFiles(run)
            return
        self.logic.discardRunFiles(run)
        self.ui.progressBar.setValue(0)
        if run.phase == "cancelled":
            self._setLabel(self.ui.inferenceStatusLabel, None, "Cancelled.")
            return
        self._setLabel(self.ui.inferenceStatusLabel, False, f"Inference failed: {run.error}")
        if isinstance(run.error, ic.ModelNotFound):
            self.onRefreshModels()
        slicer.util.errorDisplay(f"Inference failed:\n\n{run.error}", windowTitle="ITKIT Inference")

    # -- state

    def _setLabel(self, label, ok, text):
        label.text = text
        label.setStyleSheet(f"color: {STATUS_COLORS[ok]}")
        if ok is False:
            logging.warning("ITKIT Inference: %s", text)

    def _updateButtons(self, *_):
        if self.ui is None:
            return
        ui, running = self.ui, self._run is not None
        connected = self._connected and self.logic.client is not None
        mmengine = ui.backendComboBox.currentIndex == 1
        ui.configPathLineEdit.enabled = mmengine
        ui.configPathLabel.enabled = mmengine
        ui.loadModelButton.enabled = connected and not self._loadingModel and bool(ui.modelPathLineEdit.currentPath)
        ui.refreshModelsButton.enabled = connected
        ui.unloadModelButton.enabled = connected and bool(self._selectedTreeModel() or ui.modelSelectorComboBox.currentText)
        ui.runButton.enabled = (connected and not running and ui.inputVolumeSelector.currentNode() is not None
                                and bool(ui.modelSelectorComboBox.currentText))
        ui.cancelButton.enabled = running
        ui.connectButton.enabled = not running
        if not connected:
            ui.runButton.toolTip = "Connect to a server first"
        elif not ui.modelSelectorComboBox.currentText:
            ui.runButton.toolTip = "Load a model on the server first"
        else:
            ui.runButton.toolTip = "Send the volume to the server and segment it"


# ----------------------------------------------------------------------------- logic

class ITKITInferenceLogic(ScriptedLoadableModuleLogic):
    """Usable from Slicer's Python console without the GUI, e.g.:

        logic = slicer.modules.itkitinference.widgetRepresentation().self().logic
        logic.setServer("http://localhost:8000"); logic.connect()
        seg = logic.process(slicer.util.getNode("CTChest"), "abdomen_seg")
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.client = None
        self._runDirs = {}

    def setServer(self, url, apiKey=None, transport=None):
        self.client = ic.ITKITClient(url, apiKey, transport=transport)
        return self.client

    def _requireClient(self):
        if self.client is None:
            raise ic.ITKITClientError("Not connected: enter the server URL and click 'Connect to Server'.")
        return self.client

    def connect(self):
        return self._requireClient().connect()

    def startInference(self, volumeNode, modelName, options=None, pollInterval=0.5):
        """Starts a non-blocking run; the caller ticks it (see ITKITInferenceWidget._onTick)."""
        client = self._requireClient()
        if volumeNode is None:
            raise ic.InvalidParameter("Select an input volume.")
        if volumeNode.GetImageData() is None:
            raise ic.InvalidParameter(f"Volume '{volumeNode.GetName()}' has no image data.")
        import sitkUtils
        import SimpleITK as sitk
        # The voxels are copied here (MRML is not thread-safe); compressing and writing
        # the NIfTI, which takes seconds for large CTs, happens on the worker thread.
        image = sitkUtils.PullVolumeFromSlicer(volumeNode)
        workDir = tempfile.mkdtemp(prefix="itkit_slicer_")
        imagePath = os.path.join(workDir, "input.nii.gz")
        run = itkit_tasks.InferenceRun(client, imagePath, modelName, os.path.join(workDir, "result.nii.gz"),
                                       options, pollInterval, prepare=lambda: sitk.WriteImage(image, imagePath, True))
        self._runDirs[id(run)] = workDir
        return run.start()

    def discardRunFiles(self, run):
        workDir = self._runDirs.pop(id(run), None)
        if workDir:
            run.when_idle(lambda: shutil.rmtree(workDir, ignore_errors=True))

    def cleanup(self):
        for workDir in self._runDirs.values():
            shutil.rmtree(workDir, ignore_errors=True)
        self._runDirs = {}

    def loadResult(self, labelPath, volumeNode, modelInfo, segmentationNode=None, modelName=None,
                   show3D=False):
        """Turns the server's label file into segments named and coloured after the model's labels."""
        labels = {label.value: label for label in ic.model_labels(modelInfo)}
        labelNode = slicer.util.loadLabelVolume(labelPath, {"show": False})
        colorNode = None
        try:
            maxValue = int(labelNode.GetImageData().GetScalarRange()[1])
            colorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode", "ITKITLabels")
            colorNode.SetTypeToUser()
            colorNode.SetNumberOfColors(maxValue + 1)
            for value in range(maxValue + 1):
                label = labels.get(value) or ic.Label(value, f"label_{value}", ic.default_color(value))
                r, g, b = (c / 255.0 for c in label.color)
                colorNode.SetColor(value, label.name, r, g, b, 1.0)
            if labelNode.GetDisplayNode() is None:
                labelNode.CreateDefaultDisplayNodes()
            labelNode.GetDisplayNode().SetAndObserveColorNodeID(colorNode.GetID())
            # The result is in the input's (untransformed) frame; keep it under the same transform.
            labelNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())

            if segmentationNode is None:
                name = f"{volumeNode.GetName()} {modelName or 'ITKIT'}"
                segmentationNode = slicer.mrmlScene.AddNewNodeByClass(
                    "vtkMRMLSegmentationNode", slicer.mrmlScene.GenerateUniqueName(name))
            else:
                segmentationNode.GetSegmentation().RemoveAllSegments()
            segmentationNode.CreateDefaultDisplayNodes()
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
            segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
            if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelNode, segmentationNode):
                raise ic.ITKITClientError("Slicer could not import the label map into a segmentation.")
            segmentation = segmentationNode.GetSegmentation()
            for i in range(segmentation.GetNumberOfSegments()):
                segment = segmentation.GetNthSegment(i)
                label = labels.get(segment.GetLabelValue())
                if label is not None:  # the colour table normally did this already
                    segment.SetName(label.name)
                    segment.SetColor(*(c / 255.0 for c in label.color))
            if modelName:
                segmentationNode.SetAttribute("ITKIT.Model", modelName)
        finally:
            slicer.mrmlScene.RemoveNode(labelNode)
            if colorNode is not None:
                slicer.mrmlScene.RemoveNode(colorNode)
        if show3D:
            segmentationNode.CreateClosedSurfaceRepresentation()
        slicer.util.setSliceViewerLayers(background=volumeNode)
        return segmentationNode

    def process(self, volumeNode, modelName, options=None, segmentationNode=None, timeout=None,
                show3D=False):
        """Blocking inference for scripts and tests; keeps Slicer's event loop running."""
        run = self.startInference(volumeNode, modelName, options, pollInterval=0.2)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while run.tick():
                if deadline is not None and time.monotonic() > deadline:
                    run.cancel()
                    raise ic.ServerError(f"Inference did not finish within {timeout:g} s.")
                slicer.app.processEvents()
                time.sleep(0.02)
            if run.phase == "failed":
                raise run.error
            if run.phase == "cancelled":
                raise ic.JobCancelled("Inference was cancelled.")
            modelInfo = self.client.get_model(modelName)
            return self.loadResult(run.result_path, volumeNode, modelInfo, segmentationNode,
                                   modelName, show3D)
        finally:
            self.discardRunFiles(run)


# ----------------------------------------------------------------------------- self-test

class ITKITInferenceTest(ScriptedLoadableModuleTest):
    """Runs against a live server: ITKIT_SERVER_URL (else the URL saved by the module),
    ITKIT_API_KEY, ITKIT_TEST_MODEL (an .onnx; default models/demo_ct_body.onnx of the
    repository, else a model already loaded on the server). Skips when none is reachable."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_ClientHelpers()
        self.setUp()
        self.test_FullFlow()

    def test_ClientHelpers(self):
        self.assertEqual(ic.parse_triplet("96,96,64"), [96, 96, 64])
        self.assertEqual([l.name for l in ic.model_labels({"labels": ["bg", "liver"]})], ["bg", "liver"])
        with self.assertRaises(ic.InvalidParameter):
            ic.InferenceOptions(window_level=40).to_fields()

    def _server(self):
        settings = qt.QSettings()
        url = os.environ.get("ITKIT_SERVER_URL") or settings.value(SETTINGS + "ServerURL", "")
        key = os.environ.get("ITKIT_API_KEY") or settings.value(SETTINGS + "APIKey", "")
        return url, key

    def _phantom(self):
        import numpy as np
        sample = os.path.join(_HERE, "..", "..", "models", "sample", "sample_ct.nii.gz")
        if os.path.isfile(sample):
            return slicer.util.loadVolume(sample)
        # Body-like ellipsoid: soft tissue with a fat rim and a bony core, air outside.
        z, y, x = np.mgrid[0:48, 0:96, 0:96].astype(np.float32)
        r = np.sqrt(((x - 48) / 40) ** 2 + ((y - 48) / 30) ** 2 + ((z - 24) / 40) ** 2)
        hu = np.full(r.shape, -1000, np.int16)
        hu[r < 1.0] = -100
        hu[r < 0.9] = 40
        hu[r < 0.25] = 900
        node = slicer.util.addVolumeFromArray(hu, name="ITKITPhantom")
        node.SetSpacing(1.5, 1.5, 3.0)
        return node

    def test_FullFlow(self):
        url, key = self._server()
        if not url:
            self.delayDisplay("Full-flow test skipped: set ITKIT_SERVER_URL or connect once in the module.")
            return
        logic = ITKITInferenceLogic()
        logic.setServer(url, key)
        try:
            logic.connect()
        except ic.ServerUnreachable as e:
            self.delayDisplay(f"Full-flow test skipped: {e}")
            return
        self.delayDisplay(f"Connected to {url}")
        modelPath = os.environ.get("ITKIT_TEST_MODEL") or os.path.join(
            _HERE, "..", "..", "models", "demo_ct_body.onnx")
        modelName = "itkit_selftest"
        loadedHere = os.path.isfile(modelPath)
        if loadedHere:
            logic.client.load_model(modelName, os.path.abspath(modelPath))
        else:
            models = logic.client.list_models()
            if not models:
                self.delayDisplay("Full-flow test skipped: no model file and none loaded on the server.")
                return
            modelName = models[0]["name"]
        try:
            names = {l.name for l in ic.model_labels(logic.client.get_model(modelName))}
            volumeNode = self._phantom()
            self.delayDisplay(f"Segmenting '{volumeNode.GetName()}' with '{modelName}'")
            segNode = logic.process(volumeNode, modelName, ic.InferenceOptions(), timeout=900)
            segmentation = segNode.GetSegmentation()
            self.assertGreater(segmentation.GetNumberOfSegments(), 0)
            for i in range(segmentation.GetNumberOfSegments()):
                if names:
                    self.assertIn(segmentation.GetNthSegment(i).GetName(), names)
            # The same through the GUI: the widget's own connect / run / timer path.
            widget = slicer.modules.itkitinference.widgetRepresentation().self()
            widget.ui.serverUrlLineEdit.text = url
            widget.ui.apiKeyLineEdit.text = key
            widget.onConnect()
            self._waitFor(lambda: widget._connected and modelName in widget._models, 60)
            widget.ui.inputVolumeSelector.setCurrentNode(volumeNode)
            widget.ui.modelSelectorComboBox.setCurrentIndex(widget.ui.modelSelectorComboBox.findText(modelName))
            widget.ui.outputSegmentationSelector.setCurrentNode(None)
            before = len(slicer.util.getNodesByClass("vtkMRMLSegmentationNode"))
            widget.onRunInference()
            self._waitFor(lambda: widget._run is None, 900)
            self.assertIn("segment(s)", widget.ui.inferenceStatusLabel.text)
            self.assertEqual(len(slicer.util.getNodesByClass("vtkMRMLSegmentationNode")), before + 1)
            # Cancel right after starting: the run must end as cancelled, the GUI usable again.
            widget.onRunInference()
            widget.onCancel()
            self._waitFor(lambda: widget._run is None, 60)
            self.assertEqual(widget.ui.inferenceStatusLabel.text, "Cancelled.")
            self.delayDisplay("Full-flow test passed")
        finally:
            if loadedHere:
                logic.client.unload_model(modelName)

    def _waitFor(self, condition, timeout):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s")
            slicer.app.processEvents()
            time.sleep(0.02)
