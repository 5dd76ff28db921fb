// POST /api/infer — synchronous inference: multipart upload in, label file out.
// The request becomes a (hidden) job on its device's queue and this
// connection waits for it, so limits and cancellation work as for /api/jobs.
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "server/multipart.h"
#include "server/params.h"
#include "server/routes/routes.h"

namespace itkit::server {

namespace {

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// ITK picks the reader by file extension, and the client's file name is
// untrusted; the first bytes decide, the name is only a fallback.
std::string ImageSuffix(const std::string& path, std::string filename) {
  char head[352] = {0};
  std::ifstream in(path, std::ios::binary);
  in.read(head, sizeof(head));
  std::streamsize n = in.gcount();
  auto u8 = [&](int i) { return static_cast<unsigned char>(head[i]); };
  if (n >= 2 && u8(0) == 0x1f && u8(1) == 0x8b) return ".nii.gz";
  if (n >= 4 && std::memcmp(head, "NRRD", 4) == 0) return ".nrrd";
  if (n >= 10 && std::memcmp(head, "ObjectType", 10) == 0) return ".mha";
  if (n >= 348) {
    int32_t le = static_cast<int32_t>(u8(0) | u8(1) << 8 | u8(2) << 16 | static_cast<uint32_t>(u8(3)) << 24);
    int32_t be = static_cast<int32_t>(u8(3) | u8(2) << 8 | u8(1) << 16 | static_cast<uint32_t>(u8(0)) << 24);
    if (le == 348 || be == 348 || le == 540 || be == 540) return ".nii";
  }
  for (auto& c : filename) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* ext : {".nii.gz", ".nii", ".nrrd", ".mha"}) {
    if (EndsWith(filename, ext)) return ext;
  }
  return "";
}

}  // namespace

ApiResult<JobInput> PrepareInference(Request& req, App& app) {
  req.body_limit = app.max_upload_bytes();
  FormOptions fo;
  fo.temp_dir = app.temp_dir;
  fo.file_fields = {"image"};
  auto form = ReadMultipartForm(req, fo);
  if (!form.ok()) return form.error();
  auto params = ParseInferParams(form->fields);
  if (!params.ok()) return params.error();
  auto image_it = form->files.find("image");
  if (image_it == form->files.end()) return MakeError(400, "No image file uploaded (form field 'image')");
  UploadedFile& image = image_it->second;
  if (image.size == 0) return MakeError(400, "the uploaded image is empty");

  auto model = app.models->Resolve(params->model_name);
  if (!model.ok()) {
    // Not there (yet): while the --model-dir models load, say so rather than
    // "not loaded", so the client retries.
    if (app.loading_models && (model.error().http_status == 404 || model.error().http_status == 400)) {
      return MakeError(503, "the server is still loading its models (--model-dir); retry shortly", 1);
    }
    return model.error();
  }
  std::shared_ptr<ModelEntry> entry = model.value();

  std::string suffix = ImageSuffix(image.file->path(), image.filename);
  if (suffix.empty()) {
    return MakeError(400, "unsupported image format: expected NIfTI (.nii, .nii.gz), NRRD (.nrrd) or "
                          "MetaImage (.mha)");
  }
  std::string typed = image.file->path() + suffix;
  if (::rename(image.file->path().c_str(), typed.c_str()) != 0) {
    return MakeError(500, "cannot rename the uploaded image");
  }
  image.file->Release();
  auto typed_file = std::make_shared<TempFile>(typed);

  auto header = app.read_header(typed);
  if (!header.ok()) return MakeError(400, "cannot read the uploaded image: " + header.status().message());
  const pipeline::ImageHeader& h = header.value();
  if (h.dimension != 3) {
    return MakeError(400, "expected a 3D image, got a " + std::to_string(h.dimension) + "D image");
  }
  int64_t voxels = 1;
  for (int64_t s : h.size) {
    if (s <= 0) return MakeError(400, "the uploaded image has zero size");
    if (voxels > app.config.max_voxels / s) {
      return MakeError(413, "image too large: more than " + std::to_string(app.config.max_voxels) + " voxels");
    }
    voxels *= s;
  }
  if (h.size.size() != 3) return MakeError(400, "the uploaded image header is inconsistent");
  if (h.components != entry->info.input_channels) {
    return MakeError(400, "model '" + entry->name + "' expects " + std::to_string(entry->info.input_channels) +
                              " channel(s) per voxel; the image has " + std::to_string(h.components));
  }

  JobInput in;
  in.model = entry;
  in.image = typed_file;
  in.request.window_level = params->window_level;
  in.request.window_width = params->window_width;
  in.request.force_cpu = params->force_cpu;
  in.request.inference_override = params->overrides.ToPipeline();
  // force_cpu keeps ITKIT's meaning: window logits are accumulated (and the
  // argmax taken) in host memory, which spares GPU memory on large volumes; the
  // network still runs where the model was loaded, so the request waits in that
  // device's queue. A request that wants the network on the CPU too sends
  // forward_device=cpu.
  if (params->force_cpu) in.request.inference_override.accumulate_device = "cpu";
  in.output_suffix = "." + params->output_format;
  in.result_filename = "segmentation." + params->output_format;
  in.device = entry->Device(in.request.inference_override.forward_device.value_or("") == "cpu");
  in.upload_seconds = form->upload_seconds;
  return in;
}

namespace {

Response RunSync(Request& req, App& app) {
  HeavySlot slot(app);
  if (!slot.ok()) return Response::Error(MakeError(503, "server busy with uploads and inferences; retry later", 5));
  auto input = PrepareInference(req, app);
  if (!input.ok()) return Response::Error(input.error());
  std::string model_name = input->model->name;
  auto job = app.jobs->Submit(std::move(input).value());
  if (!job.ok()) {
    Response r = Response::Error(job.error());
    r.log_model = model_name;
    return r;
  }
  struct Forget {
    App& app;
    std::string id;
    ~Forget() { app.jobs->Forget(id); }
  } forget{app, job.value()->id()};
  // The queue enforces the time limit; the margin covers a pipeline that is
  // slow to notice the cancel flag.
  auto until = job.value()->created() + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(app.config.request_timeout + 30));
  Response r;
  if (!app.jobs->Wait(*job.value(), until)) {
    r = Response::Error(504, "inference exceeded the time limit of " +
                                 std::to_string(static_cast<int64_t>(app.config.request_timeout)) + " s");
  } else {
    auto result = job.value()->Result();
    if (!result.ok()) {
      r = Response::Error(result.error());
    } else {
      r = Response::Download(result.value()->path(), job.value()->input().result_filename, result.value());
    }
  }
  r.server_timing = job.value()->ServerTiming();
  r.log_model = model_name;
  return r;
}

}  // namespace

void RegisterInferRoutes(Router& router, App& app) {
  router.Add("POST", "/api/infer", [&app](Request& req) { return RunSync(req, app); });
}

}  // namespace itkit::server
