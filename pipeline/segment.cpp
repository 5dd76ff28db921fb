// One segmentation, start to end: read → reorient + normalise → (resample) → windows
// (accumulated, argmax written slab by slab into the output grid) → (resample back,
// reorient back) → statistics → write.
#include <chrono>
#include <cmath>
#include <fstream>
#include <optional>

#include "image_io.h"
#include "intensity.h"
#include "itkit/log.h"
#include "metadata.h"
#include "model_impl.h"
#include "orientation.h"
#include "resample.h"
#include "seg_nrrd.h"
#include "stats.h"
#include "timing.h"
#include "window_runner.h"

namespace itkit::pipeline {
namespace {

// Wall and CPU seconds per stage into the report.
class StageTimer {
 public:
  explicit StageTimer(SegmentReport* r)
      : report_(r), start_(Clock::now()), last_(start_), cpu_start_(CpuSeconds()), cpu_last_(cpu_start_) {}
  void Mark(const std::string& stage) {
    const auto now = Clock::now();
    const double cpu = CpuSeconds();
    report_->stage_seconds[stage] += std::chrono::duration<double>(now - last_).count();
    report_->stage_cpu_seconds[stage] += cpu - cpu_last_;
    last_ = now;
    cpu_last_ = cpu;
  }
  // The window loop times its parts itself.
  void Add(const std::string& stage, const PartTimer& t) {
    report_->stage_seconds[stage] += t.wall;
    report_->stage_cpu_seconds[stage] += t.cpu;
  }
  void Total() {
    report_->stage_seconds["total"] = std::chrono::duration<double>(Clock::now() - start_).count();
    report_->stage_cpu_seconds["total"] = CpuSeconds() - cpu_start_;
  }
  // Restarts the interval without charging it (the parts were added already).
  void Skip() {
    cpu_last_ = CpuSeconds();
    last_ = Clock::now();
  }

 private:
  SegmentReport* report_;
  Clock::time_point start_, last_;
  double cpu_start_, cpu_last_;
};

Zyx ToZyx(const std::array<int64_t, 3>& xyz) { return {xyz[2], xyz[1], xyz[0]}; }

// Softmax over classes of planar (classes, n) logits, in place.
void Softmax(float* data, int classes, int64_t n, ThreadPool* pool) {
  ParallelFor(pool, n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float m = data[i];
      for (int c = 1; c < classes; ++c) m = std::max(m, data[c * n + i]);
      float sum = 0;
      for (int c = 0; c < classes; ++c) sum += (data[c * n + i] = std::exp(data[c * n + i] - m));
      for (int c = 0; c < classes; ++c) data[c * n + i] /= sum;
    }
  });
}

// Argmax over planar (classes, n) values; first maximum wins.
template <typename T>
void ArgmaxPlanar(const float* data, int classes, int64_t n, T* out, ThreadPool* pool) {
  ParallelFor(pool, n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float best = data[i];
      T arg = 0;
      for (int c = 1; c < classes; ++c)
        if (data[c * n + i] > best) { best = data[c * n + i]; arg = static_cast<T>(c); }
      out[i] = arg;
    }
  });
}

struct Context {
  PipelineModel* model;
  const SegmentRequest* request;
  SegmentReport* report;
  StageTimer* timer;
  const ProgressFn* progress;
  ThreadPool* pool;
};

void Report(const Context& ctx, const char* stage) {
  if (*ctx.progress) (*ctx.progress)(Progress{stage, 0, 0});
}

// The part after the window loop, per label type. `labels` are in the input's grid
// when `in_input_grid`, else in the grid the windows ran on (run_size).
template <typename T>
Status Finish(const Context& ctx, WindowRunResult& run, Buffer<T> labels, bool in_input_grid, const Volume& input,
              const Reorientation& ro, const Zyx& net_size, const Zyx& run_size,
              const std::array<double, 3>& scale) {
  const ModelInfo& info = ctx.model->info_;
  const SegmentRequest& req = *ctx.request;
  ThreadPool* pool = ctx.pool;
  const int classes = run.classes;
  const int64_t net_voxels = net_size[0] * net_size[1] * net_size[2];
  const int64_t run_voxels = run_size[0] * run_size[1] * run_size[2];
  const bool resampled = net_size != run_size;
  const bool keep_model = req.output_in_model_orientation;
  const std::array<double, 3> back{1 / scale[0], 1 / scale[1], 1 / scale[2]};
  auto copy = [](auto v) { return v; };

  Buffer<float> logits;  // averaged logits on the network grid: probabilities, logit resampling
  if (run.accumulator && (!req.probabilities_path.empty() || (resampled && info.resample_back == "logits"))) {
    ITKIT_ASSIGN_OR_RETURN(Buffer<float> averaged, Buffer<float>::Allocate(classes * run_voxels));
    ITKIT_RETURN_IF_ERROR(run.accumulator->Averaged(averaged.data()));
    if (resampled) {
      ITKIT_ASSIGN_OR_RETURN(logits, Buffer<float>::Allocate(classes * net_voxels));
      ResampleLinear(averaged.data(), classes, run_size, logits.data(), net_size, back, pool);
    } else {
      logits = std::move(averaged);
    }
  }
  run.accumulator.reset();

  Report(ctx, "postprocess");
  Buffer<T> input_labels, out_labels;
  if (in_input_grid) {
    input_labels = out_labels = std::move(labels);
  } else {
    Buffer<T> net_labels;
    if (resampled && info.resample_back == "logits") {
      ITKIT_ASSIGN_OR_RETURN(net_labels, Buffer<T>::Allocate(net_voxels));
      ArgmaxPlanar(logits.data(), classes, net_voxels, net_labels.data(), pool);
    } else if (resampled) {
      ITKIT_ASSIGN_OR_RETURN(net_labels, Buffer<T>::Allocate(net_voxels));
      ResampleNearest(labels.data(), run_size, net_labels.data(), net_size, back, pool);
    } else {
      net_labels = std::move(labels);
    }
    if (!keep_model || !input.empty()) {  // the input grid: the output, or statistics
      if (ro.map.identity()) {
        input_labels = net_labels;
      } else {
        ITKIT_ASSIGN_OR_RETURN(input_labels, Buffer<T>::Allocate(net_voxels));
        ReorientBackward(ro, net_labels.data(), input_labels.data(), pool, copy);
      }
    }
    out_labels = keep_model ? net_labels : input_labels;
  }
  const Geometry& out_geometry = keep_model ? ro.output : ro.input;
  ctx.timer->Mark("restore");

  if (!input.empty()) {  // kept only when statistics were asked for
    const Geometry& g = ro.input;
    VisitPixelType(input.type, [&](auto tag) {
      using I = decltype(tag);
      ctx.report->stats = ComputeLabelStats(input_labels.data(), input.channel<I>(0), g.voxels(), classes,
                                            g.spacing[0] * g.spacing[1] * g.spacing[2], info.labels, pool);
    });
    ctx.timer->Mark("stats");
  }

  Report(ctx, "write");
  MetaData md;
  if (IsSegNrrdPath(req.output_path))
    md = SegNrrdMetaData(out_geometry, out_labels.data(), classes, info.labels, pool);
  ITKIT_RETURN_IF_ERROR(
      WriteLabelImage(req.output_path, out_geometry, out_labels.data(), md, req.compression_level, pool));
  if (!req.probabilities_path.empty()) {
    Softmax(logits.data(), classes, net_voxels, pool);
    Buffer<float> planes = logits;
    if (!keep_model && !ro.map.identity()) {
      ITKIT_ASSIGN_OR_RETURN(planes, Buffer<float>::Allocate(classes * net_voxels));
      for (int c = 0; c < classes; ++c)
        ReorientBackward(ro, logits.data() + c * net_voxels, planes.data() + c * net_voxels, pool, copy);
    }
    ITKIT_RETURN_IF_ERROR(
        WriteVectorImage(req.probabilities_path, out_geometry, planes.data(), classes, req.compression_level, pool));
  }
  if (!req.stats_path.empty()) {
    std::ofstream f(req.stats_path);
    f << LabelStatsToJson(*ctx.report);
    if (!f) return IoError(req.stats_path, ": could not write statistics");
  }
  ctx.timer->Mark("write");
  return Status::Ok();
}

Result<SegmentReport> SegmentImpl(PipelineModel& m, const SegmentRequest& req, const ProgressFn& progress,
                                  const std::atomic<bool>* cancel) {
  const ModelInfo& info = m.info_;
  ThreadPool* pool = m.pool_.get();
  SegmentReport report;
  StageTimer timer(&report);
  Context ctx{&m, &req, &report, &timer, &progress, pool};

  // Everything that can be refused without reading the image is refused first.
  InferenceConfig cfg = info.inference;
  ApplyOverride(req.inference_override, &cfg);
  if (req.inference_override.patch_size && !req.inference_override.patch_stride) {
    cfg.patch_stride.clear();
    for (int64_t p : cfg.patch_size) cfg.patch_stride.push_back(std::max<int64_t>(1, p / 2));
  }
  ITKIT_RETURN_IF_ERROR(ValidateInferenceConfig(cfg));
  if (!info.static_patch.empty() && cfg.patch_size != info.static_patch)
    return InvalidArgument("patch_size ", ShapeToString(cfg.patch_size), " differs from the network's static input ",
                           ShapeToString(info.static_patch));
  if (m.static_batch_ > 1)
    return Unsupported("the network has a fixed batch of ", m.static_batch_, "; export it with batch 1 or dynamic");
  if (m.static_batch_ == 1 && cfg.forward_batch_windows > 1) {
    report.notes.push_back(StrCat("forward_batch_windows ", cfg.forward_batch_windows,
                                  " ignored: the network's input has a fixed batch of 1"));
    LogInfo(info.name, ": ", report.notes.back());
    cfg.forward_batch_windows = 1;
  }
  // forward_device "cpu" (per request): the network on the host too (a CPU
  // session when the model's own runs on CUDA). force_cpu moves only the
  // accumulation, as in ITKIT.
  const bool cpu_network = cfg.forward_device == "cpu";
  std::string note;
  ITKIT_ASSIGN_OR_RETURN(IntensityTransform intensity,
                         ResolveIntensity(info.normalization, req.window_level, req.window_width, &note));
  if (!note.empty()) report.notes.push_back(note);
  if (!IsWritableImagePath(req.output_path))
    return InvalidArgument(req.output_path, ": no image format for this output name");
  if (!req.probabilities_path.empty() && !IsWritableImagePath(req.probabilities_path))
    return InvalidArgument(req.probabilities_path, ": no image format for this output name");

  Report(ctx, "read");
  ReadOptions ro_opts;
  ro_opts.channels = info.input_channels;
  ro_opts.max_voxels = m.options_.max_voxels;
  ITKIT_ASSIGN_OR_RETURN(Volume volume, ReadVolume(req.input_path, ro_opts));
  report.size = {volume.geometry.size[0], volume.geometry.size[1], volume.geometry.size[2]};
  timer.Mark("read");

  Report(ctx, "preprocess");
  auto plan = PlanReorientation(volume.geometry, info.orientation);
  if (!plan.ok()) return plan.status().WithContext(req.input_path);
  const Reorientation ro = *plan;
  report.orientation = ro.from;
  const Zyx net_size = ToZyx(ro.output.size);
  const int64_t voxels = volume.geometry.voxels();
  const int channels = volume.channels;

  // Optional resampling to the training spacing (network axes z, y, x).
  Zyx run_size = net_size;
  std::array<double, 3> scale{1, 1, 1};  // new spacing / old spacing, z y x
  const bool resample = info.resample_to_spacing && info.spacing;
  if (resample) {
    const std::array<double, 3> old_sp{ro.output.spacing[2], ro.output.spacing[1], ro.output.spacing[0]};
    const std::array<double, 3> new_sp{(*info.spacing)[2], (*info.spacing)[1], (*info.spacing)[0]};
    run_size = ResampledSize(net_size, old_sp, new_sp);
    if (run_size[0] * run_size[1] * run_size[2] > m.options_.max_voxels)
      return ResourceExhausted(req.input_path, ": resampled to the model's spacing the image has more than ",
                               m.options_.max_voxels, " voxels");
    for (size_t a = 0; a < 3; ++a) scale[a] = new_sp[a] / old_sp[a];
  }
  WindowRunSpec spec;
  spec.channels = channels;
  spec.size = run_size;
  if (cfg.patch_size.empty()) {  // no patch anywhere: the whole volume is one window (ITKIT)
    spec.patch = spec.stride = run_size;
  } else {
    spec.patch = {cfg.patch_size[0], cfg.patch_size[1], cfg.patch_size[2]};
    spec.stride = {cfg.patch_stride[0], cfg.patch_stride[1], cfg.patch_stride[2]};
  }
  // The network input straight in the block layout the window loop reads fastest,
  // when it goes there unchanged (not resampled, not padded). Z-scores keep z, y, x:
  // their image mean is summed in that order.
  std::optional<BlockGrid> blocks;
  if (run_size == net_size && !intensity.needs_image_stats) blocks = InputBlocks(run_size, spec.patch, spec.stride);
  spec.input_blocked = blocks.has_value();

  ITKIT_ASSIGN_OR_RETURN(Buffer<float> net_input, Buffer<float>::Allocate(channels * voxels));
  for (int c = 0; c < channels; ++c) {
    float* dst = net_input.data() + c * voxels;
    VisitPixelType(volume.type, [&](auto tag) {
      using T = decltype(tag);
      const T* src = volume.channel<T>(c);
      if (intensity.needs_image_stats) {
        ReorientForward(ro, src, dst, pool, [](T v) { return static_cast<float>(v); });
        IntensityTransform t = intensity;
        FitZScore(&t, dst, voxels, pool);
        ApplyIntensity(t, dst, voxels, pool);
      } else {
        // One pass: voxels as stored → float → normalised, in the network's layout.
        const IntensityTransform& t = intensity;
        const auto f = [t](T v) { return t(static_cast<float>(v)); };
        if (blocks) {
          ReorientForwardBlocks(ro, src, dst, *blocks, pool, f);
        } else {
          ReorientForward(ro, src, dst, pool, f);
        }
      }
    });
  }
  const bool want_stats = req.stats || !req.stats_path.empty();
  if (!want_stats) volume.Reset();  // raw intensities only feed statistics
  timer.Mark("preprocess");

  if (resample) {
    if (run_size != net_size) {
      ITKIT_ASSIGN_OR_RETURN(Buffer<float> r, Buffer<float>::Allocate(channels * run_size[0] * run_size[1] * run_size[2]));
      ResampleLinear(net_input.data(), channels, net_size, r.data(), run_size, scale, pool);
      net_input = std::move(r);
    }
    timer.Mark("resample");
  }
  spec.input = net_input.data();
  spec.batch = cfg.forward_batch_windows;
  spec.gaussian = cfg.blend == "gaussian";
  spec.tta = cfg.tta;
  spec.accumulate_device = req.force_cpu ? "cpu" : cfg.accumulate_device;
  const bool own_network = !cpu_network || m.network_->device() == "cpu";
  spec.expected_classes = info.num_classes;
  spec.max_voxels = m.options_.max_voxels;
  // Labels straight into the output grid when nothing is resampled; else into the
  // run grid, resampled and reoriented afterwards.
  const bool resampled = run_size != net_size;
  const bool labels_in_input_grid = !resampled && !req.output_in_model_orientation;
  if (labels_in_input_grid) {
    ForwardStrides(ro, &spec.label_offset, &spec.label_strides);
    spec.label_voxels = voxels;
  } else {
    spec.label_offset = 0;
    spec.label_strides = {1, run_size[2], run_size[2] * run_size[1]};
    spec.label_voxels = run_size[0] * run_size[1] * run_size[2];
  }
  spec.keep_averages = !req.probabilities_path.empty() || (resampled && info.resample_back == "logits");
  if (cfg.fp16 && (!own_network || m.network_->device() != "cuda"))
    report.notes.push_back("fp16 ignored: the network runs on the CPU");

  WindowRunResult run;
  {
    std::lock_guard<std::mutex> lock(own_network ? m.device_mutex_ : m.cpu_mutex_);
    timer.Mark("queue");
    Network* network = m.network_.get();
    if (!own_network) {
      ITKIT_ASSIGN_OR_RETURN(network, m.CpuNetworkLocked());
    }
    report.device = network->device();
    ITKIT_ASSIGN_OR_RETURN(run, RunWindows(*network, spec, pool, progress, cancel));
  }
  net_input.Reset();
  report.windows = run.windows;
  report.batch = run.batch;
  if (run.accumulator) report.accumulate_device = run.accumulator->device();
  for (auto& n : run.notes) report.notes.push_back(n);
  timer.Add("extract", run.extract);
  timer.Add("network", run.network);
  timer.Add("accumulate", run.accumulate);
  timer.Skip();
  if (cancel != nullptr && cancel->load()) return Cancelled("cancelled");

  const Status s =
      run.classes > 255
          ? Finish(ctx, run, std::move(run.labels16), labels_in_input_grid, volume, ro, net_size, run_size, scale)
          : Finish(ctx, run, std::move(run.labels8), labels_in_input_grid, volume, ro, net_size, run_size, scale);
  ITKIT_RETURN_IF_ERROR(s);
  timer.Total();
  return report;
}

}  // namespace

Result<SegmentReport> PipelineModel::Segment(const SegmentRequest& request, const ProgressFn& progress,
                                             const std::atomic<bool>* cancel) {
  try {
    return SegmentImpl(*this, request, progress, cancel);
  } catch (const std::bad_alloc&) {
    return OutOfMemory(request.input_path, ": out of memory");
  } catch (const std::exception& e) {
    return Internal(request.input_path, ": ", e.what());
  }
}

}  // namespace itkit::pipeline
