// Graph passes, each named and switchable (SessionOptions::disabled_passes).
#pragma once

#include <string>
#include <vector>

#include "itkit/graph.h"
#include "itkit/status.h"

namespace itkit {

struct PassInfo {
  const char* name;
  const char* description;
  Status (*run)(Graph& graph, bool& changed);
};

// In the order they run.
const std::vector<PassInfo>& AllPasses();

// Runs every pass not in `disabled` (repeating the list until nothing changes, at
// most a few rounds); appends the names of passes that changed the graph.
Status RunPasses(Graph& graph, const std::vector<std::string>& disabled,
                 std::vector<std::string>* applied);

}  // namespace itkit
