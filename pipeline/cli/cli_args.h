// itkit_infer's command line, parsed into the pipeline's request types.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "itkit/pipeline.h"

namespace itkit::cli {

struct InferArgs {
  pipeline::LoadOptions load;
  pipeline::SegmentRequest request;  // input/output paths filled per file
  std::string input, output;
  std::string stats;                 // file (single input) or folder (batch)
  std::string probabilities;
  std::string format;                // batch output extension, e.g. ".seg.nrrd"; "" = input's
  std::string timing_json;           // JSON lines, one object per file
  bool timing = false;
  bool quiet = false;
  bool help = false;
};

// Errors name the offending option.
Result<InferArgs> ParseInferArgs(const std::vector<std::string>& argv);
std::string InferUsage();

}  // namespace itkit::cli
