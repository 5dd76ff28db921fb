// SegmentationModel::Load: ONNX file → metadata < sidecar < request, network shape
// checks, session on the requested device.
#include <filesystem>

#include "itkit/log.h"
#include "itkit/onnx_importer.h"
#include "metadata.h"
#include "model_impl.h"

namespace itkit::pipeline {
namespace {

namespace fs = std::filesystem;

std::string DefaultSidecar(const std::string& model_path) {
  fs::path p(model_path);
  for (const char* ext : {".yaml", ".yml"}) {
    fs::path s = p;
    s.replace_extension(ext);
    std::error_code ec;
    if (fs::is_regular_file(s, ec)) return s.string();
  }
  return "";
}

// Reads the network's declared (N, C, Z, Y, X) input and (N, classes, ...) output.
Status InspectGraph(const Model& model, ModelInfo* info, int64_t* static_batch) {
  const Graph& g = model.graph;
  if (g.inputs.size() != 1)
    return InvalidArgument(model.source, ": the network has ", g.inputs.size(),
                           " inputs; a segmentation network takes one (N, C, Z, Y, X) image");
  if (g.outputs.empty()) return InvalidArgument(model.source, ": the network has no outputs");
  const ValueInfo& in = g.inputs[0];
  if (in.has_shape) {
    if (in.dims.size() != 5)
      return InvalidArgument(model.source, ": input '", in.name, "' has rank ", in.dims.size(),
                             "; expected (N, C, Z, Y, X)");
    *static_batch = in.dims[0].is_static() ? in.dims[0].value : 0;
    if (in.dims[1].is_static()) info->input_channels = static_cast<int>(in.dims[1].value);
    if (in.dims[2].is_static() && in.dims[3].is_static() && in.dims[4].is_static())
      info->static_patch = {in.dims[2].value, in.dims[3].value, in.dims[4].value};
  }
  const ValueInfo& out = g.outputs[0];
  if (out.has_shape && out.dims.size() != 5)
    return InvalidArgument(model.source, ": output '", out.name, "' has rank ", out.dims.size(),
                           "; expected (N, classes, Z, Y, X) logits");
  if (out.has_shape && out.dims[1].is_static()) info->num_classes = static_cast<int>(out.dims[1].value);
  return Status::Ok();
}

// Patch from the static input when there is one (a different configured patch is an
// error), else from inference_config; stride defaults to half the patch.
Status ResolvePatch(ModelInfo* info) {
  InferenceConfig& c = info->inference;
  if (!info->static_patch.empty()) {
    if (!c.patch_size.empty() && c.patch_size != info->static_patch)
      return InvalidArgument("inference_config.patch_size ", ShapeToString(c.patch_size),
                             " differs from the network's static input ", ShapeToString(info->static_patch));
    c.patch_size = info->static_patch;
  }
  if (!c.patch_size.empty() && c.patch_stride.empty())
    for (int64_t p : c.patch_size) c.patch_stride.push_back(std::max<int64_t>(1, p / 2));
  if (!c.patch_size.empty() && !c.patch_stride.empty())
    for (size_t a = 0; a < 3; ++a)
      if (c.patch_stride[a] > c.patch_size[a])
        return InvalidArgument("inference_config.patch_stride ", ShapeToString(c.patch_stride),
                               " is larger than patch_size ", ShapeToString(c.patch_size));
  return Status::Ok();
}

Status ResolveLabels(ModelInfo* info) {
  if (info->num_classes > 0 && !info->labels.empty() &&
      static_cast<int>(info->labels.size()) != info->num_classes)
    return InvalidArgument("labels: ", info->labels.size(), " names for a network with ", info->num_classes,
                           " output classes");
  if (info->num_classes == 0) info->num_classes = static_cast<int>(info->labels.size());
  for (int i = static_cast<int>(info->labels.size()); i < info->num_classes; ++i)
    info->labels.push_back(LabelInfo{i == 0 ? "background" : "label_" + std::to_string(i), DefaultLabelColor(i)});
  return Status::Ok();
}

Result<std::shared_ptr<SegmentationModel>> LoadImpl(const LoadOptions& o) {
  auto m = std::make_shared<PipelineModel>();
  m->options_ = o;
  ModelInfo& info = m->info_;
  Model model;
  if (o.synthetic_classes > 0) {
    info.name = o.name.empty() ? "synthetic" : o.name;
    info.description = "built-in benchmark network: logits bin the normalised intensity";
    info.num_classes = o.synthetic_classes;
  } else {
    if (o.model_path.empty()) return InvalidArgument("no model path given");
    ITKIT_ASSIGN_OR_RETURN(model, LoadOnnxModel(o.model_path));
    info.path = o.model_path;
    ITKIT_RETURN_IF_ERROR(ApplyMetadata(MetadataPropsToJson(model.metadata.props),
                                        o.model_path + " metadata", &info));
    const std::string sidecar = o.sidecar_path.empty() ? DefaultSidecar(o.model_path) : o.sidecar_path;
    if (!sidecar.empty()) {
      ITKIT_ASSIGN_OR_RETURN(nlohmann::json side, ReadYamlSidecar(sidecar));
      ITKIT_RETURN_IF_ERROR(ApplyMetadata(side, sidecar, &info));
      info.sidecar_path = sidecar;
    }
    ITKIT_RETURN_IF_ERROR(InspectGraph(model, &info, &m->static_batch_));
    if (!o.name.empty()) info.name = o.name;
    if (info.name.empty()) info.name = fs::path(o.model_path).stem().string();
  }
  ApplyOverride(o.inference_override, &info.inference);
  // A new patch without a stride gets the default stride, not the old patch's.
  if (o.inference_override.patch_size && !o.inference_override.patch_stride) info.inference.patch_stride.clear();
  ITKIT_RETURN_IF_ERROR(ValidateInferenceConfig(info.inference));
  ITKIT_RETURN_IF_ERROR(ResolvePatch(&info));
  ITKIT_RETURN_IF_ERROR(ResolveLabels(&info));
  if (m->static_batch_ == 1 && info.inference.forward_batch_windows > 1) {
    LogWarning(info.name, ": the network's input has a fixed batch of 1; forward_batch_windows ",
               info.inference.forward_batch_windows, " falls back to 1");
    info.inference.forward_batch_windows = 1;
  }
  if (info.resample_to_spacing && !info.spacing)
    return InvalidArgument("resample_to_spacing is set but the model declares no spacing");

  m->pool_ = std::make_unique<ThreadPool>(o.threads);
  if (o.synthetic_classes > 0) {
    m->network_ = CreateSyntheticNetwork(o.synthetic_classes);
  } else {
    NetworkOptions no;
    no.forward_device = info.inference.forward_device;
    no.fp16 = info.inference.fp16;
    no.threads = o.threads;
    no.tuning_cache_dir = o.tuning_cache_dir;
    ITKIT_ASSIGN_OR_RETURN(m->network_, CreateSessionNetwork(std::move(model), no));
  }
  info.backend = m->network_->device();
  return std::shared_ptr<SegmentationModel>(m);
}

}  // namespace

Result<Network*> PipelineModel::CpuNetworkLocked() {
  if (network_->device() == "cpu") return network_.get();
  if (!cpu_network_) {
    ITKIT_ASSIGN_OR_RETURN(Model model, LoadOnnxModel(info_.path));
    NetworkOptions no;
    no.forward_device = "cpu";
    no.threads = options_.threads;
    ITKIT_ASSIGN_OR_RETURN(cpu_network_, CreateSessionNetwork(std::move(model), no));
    LogInfo(info_.name, ": CPU session created for requests forced to the CPU");
  }
  return cpu_network_.get();
}

Result<std::shared_ptr<SegmentationModel>> SegmentationModel::Load(const LoadOptions& options) {
  try {
    return LoadImpl(options);
  } catch (const std::bad_alloc&) {
    return OutOfMemory("out of memory loading ", options.model_path);
  } catch (const std::exception& e) {
    return Internal("loading ", options.model_path, ": ", e.what());
  }
}

}  // namespace itkit::pipeline
