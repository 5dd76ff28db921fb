#include "cli_args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace itkit::cli {
namespace {

Result<double> ParseNumber(const std::string& opt, const std::string& s) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno != 0 || !std::isfinite(v))
    return InvalidArgument(opt, ": '", s, "' is not a number");
  return v;
}

Result<int64_t> ParseInt(const std::string& opt, const std::string& s, int64_t lo, int64_t hi) {
  ITKIT_ASSIGN_OR_RETURN(double v, ParseNumber(opt, s));
  if (v != std::floor(v) || v < static_cast<double>(lo) || v > static_cast<double>(hi))
    return InvalidArgument(opt, ": '", s, "' is not an integer in ", lo, "..", hi);
  return static_cast<int64_t>(v);
}

// "96,96,96" or a single "96" for all three axes; order z,y,x as ITKIT's patch_size.
Result<std::vector<int64_t>> ParseTriple(const std::string& opt, const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    ITKIT_ASSIGN_OR_RETURN(int64_t x, ParseInt(opt, part, 1, 100000));
    v.push_back(x);
  }
  if (v.size() == 1) v = {v[0], v[0], v[0]};
  if (v.size() != 3) return InvalidArgument(opt, ": expected Z,Y,X, got '", s, "'");
  return v;
}

Status Choice(const std::string& opt, const std::string& v, std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (v == a) return Status::Ok();
    list += std::string(list.empty() ? "" : ", ") + a;
  }
  return InvalidArgument(opt, ": '", v, "' is not one of ", list);
}

}  // namespace

std::string InferUsage() {
  return R"(usage: itkit_infer --model MODEL.onnx --input IN --output OUT [options]

IN and OUT are image files (NIfTI .nii/.nii.gz, NRRD .nrrd/.nhdr, MetaImage .mha/.mhd;
OUT may be .seg.nrrd for a 3D Slicer segmentation), IN may be a DICOM series folder,
or both are folders: every image in IN is segmented to the same name in OUT.

  --model PATH            ONNX model (metadata + optional NAME.yaml sidecar)
  --sidecar PATH          YAML metadata sidecar (default: next to the model)
  --patch Z,Y,X           sliding-window patch (default: the model's)
  --stride Z,Y,X          window stride (default: patch // 2)
  --batch N               windows per forward pass
  --window-level L        intensity window (overrides the model's)
  --window-width W
  --blend constant|gaussian
  --tta                   mirroring test-time augmentation (8 passes)
  --device auto|cpu|cuda  where the network runs
  --accumulate auto|cpu|cuda   where logits are accumulated
  --fp16                  half precision on the GPU
  --threads N             CPU threads (default: all cores)
  --stats PATH            per-label statistics JSON (a folder in batch mode)
  --probabilities PATH    class probabilities image (single input only)
  --format EXT            batch mode output extension, e.g. .seg.nrrd (default: input's)
  --output-orientation input|model   label grid: the input's (default) or the model's
  --compression N         gzip level 0-9 for compressed outputs (default 1)
  --max-voxels N          refuse larger images (default 2^31)
  --timing                print seconds per stage for each file
  --timing-json PATH      append per-file stage timings as JSON lines
  --identity-network C    benchmark: no model; a built-in C-class network
  --quiet                 no progress output
)";
}

Result<InferArgs> ParseInferArgs(const std::vector<std::string>& argv) {
  InferArgs a;
  a.request.compression_level = 1;
  std::optional<double> wl, ww;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& opt = argv[i];
    auto value = [&]() -> Result<std::string> {
      if (i + 1 >= argv.size()) return InvalidArgument(opt, " needs a value");
      return argv[++i];
    };
    if (opt == "-h" || opt == "--help") {
      a.help = true;
    } else if (opt == "--tta") {
      a.request.inference_override.tta = true;
    } else if (opt == "--fp16") {
      a.request.inference_override.fp16 = true;
      a.load.inference_override.fp16 = true;
    } else if (opt == "--timing") {
      a.timing = true;
    } else if (opt == "--quiet" || opt == "-q") {
      a.quiet = true;
    } else {
      ITKIT_ASSIGN_OR_RETURN(std::string v, value());
      if (opt == "--model") {
        a.load.model_path = v;
      } else if (opt == "--sidecar") {
        a.load.sidecar_path = v;
      } else if (opt == "--input" || opt == "-i") {
        a.input = v;
      } else if (opt == "--output" || opt == "-o") {
        a.output = v;
      } else if (opt == "--patch") {
        ITKIT_ASSIGN_OR_RETURN(auto p, ParseTriple(opt, v));
        a.load.inference_override.patch_size = p;
      } else if (opt == "--stride") {
        ITKIT_ASSIGN_OR_RETURN(auto p, ParseTriple(opt, v));
        a.load.inference_override.patch_stride = p;
      } else if (opt == "--batch") {
        ITKIT_ASSIGN_OR_RETURN(int64_t n, ParseInt(opt, v, 1, 4096));
        a.request.inference_override.forward_batch_windows = static_cast<int>(n);
      } else if (opt == "--window-level") {
        ITKIT_ASSIGN_OR_RETURN(wl, ParseNumber(opt, v));
      } else if (opt == "--window-width") {
        ITKIT_ASSIGN_OR_RETURN(ww, ParseNumber(opt, v));
      } else if (opt == "--blend") {
        ITKIT_RETURN_IF_ERROR(Choice(opt, v, {"constant", "gaussian"}));
        a.request.inference_override.blend = v;
      } else if (opt == "--device") {
        ITKIT_RETURN_IF_ERROR(Choice(opt, v, {"auto", "cpu", "cuda"}));
        a.load.inference_override.forward_device = v;
      } else if (opt == "--accumulate") {
        ITKIT_RETURN_IF_ERROR(Choice(opt, v, {"auto", "cpu", "cuda"}));
        a.request.inference_override.accumulate_device = v;
      } else if (opt == "--threads") {
        ITKIT_ASSIGN_OR_RETURN(int64_t n, ParseInt(opt, v, 0, 1024));
        a.load.threads = static_cast<int>(n);
      } else if (opt == "--stats") {
        a.stats = v;
      } else if (opt == "--probabilities") {
        a.probabilities = v;
      } else if (opt == "--format") {
        a.format = v.empty() || v[0] == '.' ? v : "." + v;
      } else if (opt == "--output-orientation") {
        ITKIT_RETURN_IF_ERROR(Choice(opt, v, {"input", "model"}));
        a.request.output_in_model_orientation = v == "model";
      } else if (opt == "--compression") {
        ITKIT_ASSIGN_OR_RETURN(int64_t n, ParseInt(opt, v, 0, 9));
        a.request.compression_level = static_cast<int>(n);
      } else if (opt == "--max-voxels") {
        ITKIT_ASSIGN_OR_RETURN(int64_t n, ParseInt(opt, v, 1, int64_t{1} << 50));
        a.load.max_voxels = n;
      } else if (opt == "--timing-json") {
        a.timing_json = v;
      } else if (opt == "--identity-network") {
        ITKIT_ASSIGN_OR_RETURN(int64_t n, ParseInt(opt, v, 1, 65536));
        a.load.synthetic_classes = static_cast<int>(n);
      } else {
        return InvalidArgument("unknown option ", opt, " (see --help)");
      }
    }
  }
  if (a.help) return a;
  if (wl.has_value() != ww.has_value())
    return InvalidArgument("--window-level and --window-width go together");
  a.request.window_level = wl;
  a.request.window_width = ww;
  if (a.load.model_path.empty() && a.load.synthetic_classes == 0) return InvalidArgument("--model is required");
  if (a.input.empty()) return InvalidArgument("--input is required");
  if (a.output.empty()) return InvalidArgument("--output is required");
  return a;
}

}  // namespace itkit::cli
