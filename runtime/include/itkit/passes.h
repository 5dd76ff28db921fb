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
  // Runs once, after the other passes have stopped changing the graph (a fusion
  // whose matches overlap other passes' patterns and must not pre-empt them).
  bool after_others = false;
};

// In the order they run.
const std::vector<PassInfo>& AllPasses();

// Runs every pass not in `disabled`: those without `after_others` repeatedly (the
// list until nothing changes, at most a few rounds), then the `after_others` ones
// once, in list order; appends the names of passes that changed the graph.
Status RunPasses(Graph& graph, const std::vector<std::string>& disabled,
                 std::vector<std::string>* applied);

}  // namespace itkit
