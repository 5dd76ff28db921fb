#include "stats.h"

#include <nlohmann/json.hpp>

namespace itkit::pipeline {
std::string LabelStatsToJson(const SegmentReport& report) {
  nlohmann::json labels = nlohmann::json::array();
  for (const LabelStats& s : report.stats) {
    nlohmann::json j = {{"label", s.label}, {"name", s.name}, {"voxels", s.voxels}, {"volume_mm3", s.volume_mm3}};
    if (s.voxels > 0) {
      j["mean"] = s.mean;
      j["min"] = s.min;
      j["max"] = s.max;
    } else {
      j["mean"] = j["min"] = j["max"] = nullptr;
    }
    labels.push_back(j);
  }
  nlohmann::json doc = {{"size", report.size}, {"labels", labels}};
  return doc.dump(2) + "\n";
}

}  // namespace itkit::pipeline
