#include "stats.h"

#include <nlohmann/json.hpp>

namespace itkit::pipeline {
std::string LabelStatsToJson(const SegmentReport& report) {
  // Ordered: the file reads label, name, voxels, volume, intensities.
  using Json = nlohmann::ordered_json;
  Json labels = Json::array();
  for (const LabelStats& s : report.stats) {
    Json j = {{"label", s.label}, {"name", s.name}, {"voxels", s.voxels}, {"volume_mm3", s.volume_mm3}};
    if (s.voxels > 0) {
      j["mean"] = s.mean;
      j["min"] = s.min;
      j["max"] = s.max;
    } else {
      j["mean"] = j["min"] = j["max"] = nullptr;
    }
    labels.push_back(j);
  }
  Json doc = {{"size", report.size}, {"labels", labels}};
  return doc.dump(2) + "\n";
}

}  // namespace itkit::pipeline
